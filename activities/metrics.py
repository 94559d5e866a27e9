"""Business counters the activities increment (served on the worker's /metrics, see telemetry/metrics.py).

Counters live in prometheus_client's default registry, per process: Prometheus sums them
over the worker replicas (`sum(rate(techconnect_mails_sent_total[5m]))`).
"""

from __future__ import annotations

from prometheus_client import Counter

MAILS_SENT = Counter(
    "techconnect_mails_sent",
    "Mails accepted by the SMTP relay (a retry that finds its outbox row already sent is not counted)",
    ["template"],
)
MAILS_FAILED = Counter(
    "techconnect_mails_failed",
    "Failed SMTP deliveries: error=transient (4xx, network: Temporal retries) "
    "or permanent (5xx: kept on the outbox row)",
    ["template", "error"],
)
