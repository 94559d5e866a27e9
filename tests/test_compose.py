"""docker-compose.yml is checked by parsing it: this machine has no Docker engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from config.settings import Settings, TemporalSettings
from domain.naming import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_every_service_has_an_image_or_build() -> None:
    for name, svc in compose()["services"].items():
        assert "image" in svc or "build" in svc, name


def test_dependencies_that_wait_for_health_have_health_checks() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no check"


def test_app_environment_matches_settings() -> None:
    known = {f"TECHCONNECT_{k.upper()}" for k in Settings.model_fields} | {
        f"TEMPORAL_{k.upper()}" for k in TemporalSettings.model_fields}
    for name in ("worker", "migrate"):
        env = compose()["services"][name]["environment"]
        assert set(env) <= known, f"{name}: unknown variables {set(env) - known}"
        assert "TECHCONNECT_DATABASE_URL" in env and "TEMPORAL_ADDRESS" in env


def test_registered_search_attributes_match_code() -> None:
    cmd = " ".join(compose()["services"]["temporal-setup"]["command"])
    found = dict(re.findall(r"--name (\w+) --type (\w+)", cmd))
    assert found == SEARCH_ATTRIBUTES


def test_published_ports_do_not_clash() -> None:
    ports: list[str] = []
    for svc in compose()["services"].values():
        ports += [str(p).split(":")[0] for p in svc.get("ports", [])]
    assert len(ports) == len(set(ports)), ports
    assert "ports" not in compose()["services"]["worker"], "workers scale out: no published port"


# ---------------------------------------------------------------- at scale (issue 6)
APP_SERVICES = ("migrate", "worker", "portal", "inbound", "codec")  # built from our Dockerfile


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def test_every_application_service_speaks_our_settings() -> None:
    known = {f"TECHCONNECT_{k.upper()}" for k in Settings.model_fields} | {
        f"TEMPORAL_{k.upper()}" for k in TemporalSettings.model_fields}
    built = {name for name, svc in services().items() if "build" in svc}
    assert built == set(APP_SERVICES)
    for name in APP_SERVICES:
        env = services()[name]["environment"]
        assert set(env) <= known, f"{name}: unknown variables {set(env) - known}"
        # Every host the application talks to is a service of this file.
        assert env["TEMPORAL_ADDRESS"].split(":")[0] in services()
        assert env["TECHCONNECT_SMTP_HOST"] in services()
        assert re.search(r"@([\w-]+):\d+/", env["TECHCONNECT_DATABASE_URL"]).group(1) == "app-db"  # type: ignore[union-attr]
        assert env["TECHCONNECT_DATABASE_URL"].startswith("postgresql+asyncpg://")


def test_images_are_pinned_to_versions() -> None:
    for name, svc in services().items():
        if "image" not in svc:
            continue
        image, _, tag = str(svc["image"]).rpartition(":")
        assert image and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {svc['image']} is not pinned"
    # Temporal's server and its admin tools move together.
    tags = {str(s["image"]).split(":")[1] for s in services().values()
            if str(s.get("image", "")).startswith(("temporalio/server:", "temporalio/admin-tools:"))}
    assert len(tags) == 1, tags


def test_temporal_runs_on_postgresql_with_its_schema_set_up_first() -> None:
    s = services()
    assert s["temporal"]["image"].startswith("temporalio/server:"), "auto-setup is deprecated upstream"
    assert s["temporal"]["environment"]["DB"] == "postgres12"
    assert s["temporal"]["environment"]["POSTGRES_SEEDS"] == "temporal-db"
    assert s["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    script = " ".join(s["temporal-schema"]["command"])
    assert "temporal-sql-tool" in script and "update-schema" in script
    assert "postgresql/v12/temporal/versioned" in script and "postgresql/v12/visibility/versioned" in script
    # The application has its own database, not Temporal's.
    assert s["app-db"]["image"].startswith("postgres:") and s["temporal-db"] is not s["app-db"]


def test_the_namespace_the_application_uses_is_the_one_created() -> None:
    setup = " ".join(services()["temporal-setup"]["command"])
    created = set(re.findall(r"namespace create --namespace (\S+)", setup))
    registered_in = set(re.findall(r"search-attribute create --namespace (\S+)", setup))
    used = {services()[n]["environment"]["TEMPORAL_NAMESPACE"] for n in APP_SERVICES}
    assert used == created == registered_in


def test_start_order() -> None:
    s = services()

    def waits_for(name: str) -> dict[str, str]:
        return {dep: cond["condition"] for dep, cond in (s[name].get("depends_on") or {}).items()}

    assert waits_for("worker") == {"temporal-setup": "service_completed_successfully",
                                   "migrate": "service_completed_successfully", "mailpit": "service_healthy"}
    assert waits_for("migrate") == {"app-db": "service_healthy"}
    assert waits_for("temporal-setup") == {"temporal": "service_healthy"}
    assert waits_for("temporal-schema") == {"temporal-db": "service_healthy"}
    assert waits_for("temporal-ui") == {"temporal": "service_healthy"}
    # One-shot jobs must not be restarted forever once they have succeeded.
    for job in ("temporal-schema", "temporal-setup", "migrate"):
        assert str(s[job].get("restart", "no")).startswith(("no", "on-failure")), job


def test_workers_scale_out() -> None:
    """`docker compose up --scale worker=3`: no fixed names, no published port, metrics inside the network."""
    for name, svc in services().items():
        assert "container_name" not in svc, f"{name}: a fixed container name prevents --scale"
    worker = services()["worker"]
    assert "ports" not in worker
    port = int(worker["environment"]["TECHCONNECT_METRICS_PORT"])
    assert [str(p) for p in worker["expose"]] == [str(port)]
    assert f":{port}/healthz" in " ".join(worker["healthcheck"]["test"])
    # SIGTERM first, SIGKILL only after the worker's graceful shutdown had its time.
    grace = int(str(worker["stop_grace_period"]).rstrip("s"))
    assert grace > float(worker["environment"]["TECHCONNECT_WORKER_GRACEFUL_SHUTDOWN_SECONDS"])
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    sd = prometheus["scrape_configs"][0]["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and sd["port"] == port


def test_ui_and_portal() -> None:
    s = services()
    assert s["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    # The UI decodes payloads through the codec service (issue 5), which requires a token.
    assert s["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"] == "http://localhost:8234"
    assert s["codec"]["command"] == ["codec-server"]
    assert "TECHCONNECT_CODEC_TOKEN" in s["codec"]["environment"]
    assert s["portal"]["command"][0] == "portal"
    assert s["portal"]["environment"]["TECHCONNECT_PORTAL_PORT"] == s["portal"]["ports"][0].split(":")[1]


def test_mounted_files_exist() -> None:
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} missing"


# ------------------------------------------------------------------------ the image
def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_runs_as_non_root_with_pinned_dependencies() -> None:
    text = _dockerfile()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0", "0:0"), "the runtime stage must end as a non-root user"
    assert "pip install -c constraints.txt ." in text
    assert re.search(r"^COPY constraints.txt", text, flags=re.M)
    for line in re.findall(r"^FROM\s+(\S+)", text, flags=re.M):
        assert line.startswith("${") or ":" in line, line
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, flags=re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".data", "tests"} <= set(ignored)


def test_every_dependency_is_pinned_in_constraints() -> None:
    """`make constraints` regenerates constraints.txt after a change to pyproject's dependencies."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version.strip()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for raw in deps:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt: run `make constraints`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} does not satisfy {raw}"


def test_dashboard_uses_the_metrics_the_worker_serves() -> None:
    import json

    from prometheus_client import CollectorRegistry, generate_latest

    from activities.metrics import MAILS_FAILED, MAILS_SENT
    from telemetry.metrics import BusinessCollector, BusinessSnapshot

    collector = BusinessCollector(sessions=None)  # type: ignore[arg-type]
    collector.snapshot, collector.up = BusinessSnapshot(), True
    registry = CollectorRegistry()
    registry.register(collector)
    served = set(re.findall(r"^# TYPE (\w+) \w+", generate_latest(registry).decode(), flags=re.M))
    served |= {f"{MAILS_SENT._name}_total", f"{MAILS_FAILED._name}_total"}
    dashboard = json.loads((ROOT / "deploy/grafana/techconnect-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    used = set(re.findall(r"\b(techconnect_\w+)", exprs))
    assert used and used <= served, used - served
    for name in ("techconnect_programmes", "techconnect_overdue_steps", "techconnect_sla_warnings_total",
                 "techconnect_sla_breaches_total", "techconnect_mails_sent_total", "techconnect_mails_failed_total"):
        assert name in used, f"the dashboard shows no {name}"
    # SDK metrics: the names a worker served in tests/test_scale.py (Core SDK defaults, milliseconds).
    sdk = set(re.findall(r"\b(temporal_\w+?)(?:_bucket)?\b", exprs))
    assert sdk <= {"temporal_worker_task_slots_available", "temporal_sticky_cache_size", "temporal_sticky_cache_hit",
                   "temporal_workflow_task_schedule_to_start_latency", "temporal_activity_schedule_to_start_latency",
                   "temporal_activity_execution_latency", "temporal_activity_execution_failed"}, sdk
