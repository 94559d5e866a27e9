"""Fault injection for the crash tests: kill the worker process at a named point, once.

A no-op unless `TECHCONNECT_FAULT_INJECT` names the point (a comma-separated list may
name several). When it does, the first process to reach the point creates the marker
file `<TECHCONNECT_FAULT_INJECT_DIR>/fault-<point>` (default directory:
`<TECHCONNECT_DATA_DIR or .data>/faults`) and exits at once with `os._exit(137)`, the
status of a SIGKILL: no `finally`, no atexit, no flush of anything, no reply to Temporal.
Because the marker is created first (O_EXCL), the crash happens once however many
workers share the directory, and the restarted worker runs through the same point.
Deleting the marker arms the point again.

The points (where a real SIGKILL would hurt most):

- `mail.after_smtp`: in `send_mail`, after the SMTP relay accepted the message and before
  the outbox row says "sent": the retry resends with the same Message-ID (the mailbox
  drops the duplicate);
- `mail.after_commit`: in `send_mail`, after the outbox row says "sent" and before the activity
  returns: the retry must find the row sent and not contact SMTP at all;
- `report.after_filing`: in `generate_monthly_report`, after the draft is filed and before
  the activity returns: the retry must find the document, not file a second one;
- `projection.after_commit`: in `save_projection`, after the projection and the audit
  entries are committed and before the activity returns: the retry must not add audit rows;
- `registration.after_commit`: in `register_programme` (a local activity of the run's first workflow
  task), after the registration and the start's audit entry are committed: the workflow task is never
  completed, the next worker runs it again, and that second registration must not add audit rows;
- `request.opened_after_commit`: the same in `record_request_opened`, a request's opening write.

Never set these variables in production; the worker logs a warning at start when one is set.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

FAULT_ENV = "TECHCONNECT_FAULT_INJECT"
FAULT_DIR_ENV = "TECHCONNECT_FAULT_INJECT_DIR"
CRASH_EXIT_CODE = 137  # 128 + SIGKILL, what a shell reports for a killed process

MAIL_AFTER_SMTP = "mail.after_smtp"
MAIL_AFTER_COMMIT = "mail.after_commit"
REPORT_AFTER_FILING = "report.after_filing"
PROJECTION_AFTER_COMMIT = "projection.after_commit"
REGISTRATION_AFTER_COMMIT = "registration.after_commit"
REQUEST_OPENED_AFTER_COMMIT = "request.opened_after_commit"
INBOUND_AFTER_STORE = "inbound.after_store"  # the inbound receiver stored a reply's raw message, nothing more
POINTS = (MAIL_AFTER_SMTP, MAIL_AFTER_COMMIT, REPORT_AFTER_FILING, PROJECTION_AFTER_COMMIT, REGISTRATION_AFTER_COMMIT,
          REQUEST_OPENED_AFTER_COMMIT, INBOUND_AFTER_STORE)

log = logging.getLogger(__name__)


def armed_points() -> list[str]:
    """The points `TECHCONNECT_FAULT_INJECT` names (empty: fault injection is off)."""
    return [p.strip() for p in os.environ.get(FAULT_ENV, "").split(",") if p.strip()]


def marker_dir() -> Path:
    configured = os.environ.get(FAULT_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("TECHCONNECT_DATA_DIR") or ".data") / "faults"


def marker(point: str) -> Path:
    return marker_dir() / f"fault-{point}"


def maybe_crash(point: str) -> None:
    """Exit the process here, once, if fault injection names `point`; otherwise do nothing."""
    if point not in armed_points():
        return
    path = marker(point)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return  # crashed here once already: run through
    try:
        os.write(fd, f"pid {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    log.critical("fault injection: process %s exits at %r", os.getpid(), point)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(CRASH_EXIT_CODE)


__all__ = ["CRASH_EXIT_CODE", "FAULT_DIR_ENV", "FAULT_ENV", "MAIL_AFTER_COMMIT", "MAIL_AFTER_SMTP", "POINTS",
           "PROJECTION_AFTER_COMMIT", "REPORT_AFTER_FILING", "armed_points", "marker", "maybe_crash"]
