"""`techconnect` behaviours that need no Temporal: help, and every check that refuses a
bad file, payload or option before the CLI connects (exit 2, a message naming the line,
the field or the rule). In-process with typer's CliRunner; `client_for` is replaced by a
function that fails the test, which proves nothing tried to connect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import cli.runtime as cli_module
from cli.app import app
from tests.conftest import free_port
from tests.offline_cli import offline_cli_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START = date(2027, 1, 4)


class Offline:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        result = self.runner.invoke(app, list(args))
        # A refusal is a message, never an exception escaping the command.
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    def write(self, name: str, content: str | dict[str, Any] | list[Any]) -> Path:
        path = self.tmp / name
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
        return path


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Offline:
    offline_cli_environment(tmp_path, monkeypatch, "the CLI connected to Temporal before refusing")
    return Offline(tmp_path)


def enrolment_doc(customer_id: str = "acme", **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "customer": {"id": customer_id, "name": "ACME Corp", "maintenance_subscription_id": f"SMP-{customer_id}"},
        "period_start": START.isoformat(),
        "term_months": 12,
        "written_agreement_ref": None,
        "technical_lead": {"id": "tl-alice", "name": "Alice Martin", "email": "alice@support.example"},
        "additional_contacts": [{"name": "Bob Stone", "email": "bob@acme.example", "role": "IT manager"}],
        "calendar": {"timezone": "Europe/Paris", "country": "FR"},
        "products": [{"name": "Content Server", "version": "23.4"}],
        "primary_system": "CS production cluster",
        "annual_fee": {"amount": "48000.00", "currency": "EUR"},
    }
    doc.update(overrides)
    return doc


def registry(run: Offline, *rows: str) -> None:
    csv = run.write("registry.csv", "id,customer_id,start,end,contact_count\n" + "".join(f"{r}\n" for r in rows))
    result = run("maintenance", "import", str(csv))
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- help
def test_help_lists_the_commands() -> None:
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in ("dev", "worker", "program", "step", "notice", "maintenance", "db"):
        assert command in top.output
    for group, commands in {"program": ("start", "status", "list"), "step": ("list", "complete"),
                            "notice": ("non-renewal",), "maintenance": ("import",), "db": ("upgrade",)}.items():
        result = runner.invoke(app, [group, "--help"])
        assert result.exit_code == 0, result.output
        assert all(c in result.output for c in commands), result.output
    complete = runner.invoke(app, ["step", "complete", "--help"])
    assert all(o in complete.output for o in ("--by", "--file", "--month", "--json"))


# ---------------------------------------------------------------- enrolment files
def test_malformed_json_names_line_and_column(run: Offline) -> None:
    lines = json.dumps(enrolment_doc(), indent=2).splitlines()
    assert lines[3] == '    "name": "ACME Corp",'
    lines[3] += ","  # a doubled comma at the end of line 4
    result = run("program", "start", "--file", str(run.write("enrolment.json", "\n".join(lines))))
    assert result.exit_code == 2, result.output
    assert "invalid JSON at line 4, column 25" in result.stderr
    assert result.stdout == ""


def test_malformed_yaml_names_the_line_and_keeps_brackets(run: Offline) -> None:
    text = "customer:\n  id: acme\n  name: [unclosed\nperiod_start: 2027-01-04\n"
    result = run("program", "start", "--file", str(run.write("enrolment.yaml", text)))
    assert result.exit_code == 2, result.output
    assert "invalid YAML at line 4, column 13" in result.stderr
    # Regression: the message was read as rich markup and "[...]" parts vanished.
    assert "expected ',' or ']'" in result.stderr


def test_tab_indented_yaml_names_the_line(run: Offline) -> None:
    result = run("program", "start", "--file", str(run.write("enrolment.yml", "customer:\n\tid: acme\n")))
    assert result.exit_code == 2, result.output
    assert "invalid YAML at line 2" in result.stderr


def test_wrong_field_types_name_the_fields(run: Offline) -> None:
    doc = enrolment_doc(term_months="twelve",
                        additional_contacts=[{"name": "Bob", "email": "not-an-address"}])
    result = run("program", "start", "--file", str(run.write("enrolment.json", doc)))
    assert result.exit_code == 2, result.output
    assert "field term_months" in result.stderr and "integer" in result.stderr
    assert "field additional_contacts.0.email" in result.stderr


def test_yaml_enrolment_is_read_like_json(run: Offline) -> None:
    import yaml

    # A valid YAML enrolment gets as far as the rule checks (no subscription: rule E1).
    result = run("program", "start", "--file", str(run.write("enrolment.yaml", yaml.safe_dump(enrolment_doc()))))
    assert result.exit_code == 2, result.output
    assert "rule E1" in result.stderr and "SMP-acme is not in the registry" in result.stderr


def test_missing_and_binary_files_refused(run: Offline) -> None:
    missing = run("program", "start", "--file", str(run.tmp / "nowhere.json"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    binary = run.tmp / "enrolment.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = run("program", "start", "--file", str(binary))
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in result.stderr


def test_json_with_byte_order_mark_is_accepted(run: Offline) -> None:
    path = run.tmp / "enrolment.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(enrolment_doc()).encode())
    result = run("program", "start", "--file", str(path))
    assert result.exit_code == 2, result.output
    assert "invalid JSON" not in result.stderr and "rule E1" in result.stderr


@pytest.mark.rule("C2", "C4", "E1")
def test_enrolment_rules_refused_before_connecting(run: Offline) -> None:
    registry(run, f"SMP-acme,acme,{START - timedelta(days=1)},{START + timedelta(days=800)},2",
           f"SMP-short,short,{START},2027-06-30,2")
    six = [{"name": f"C{i}", "email": f"c{i}@acme.example"} for i in range(6)]
    c4 = run("program", "start", "--file", str(run.write("c4.json", enrolment_doc(additional_contacts=six))))
    assert c4.exit_code == 2 and "rule C4" in c4.stderr and "6 additional contacts" in c4.stderr, c4.output
    c2 = run("program", "start", "--file", str(run.write("c2.json", enrolment_doc(term_months=18))))
    assert c2.exit_code == 2 and "rule C2" in c2.stderr and "18 months" in c2.stderr, c2.output
    e1 = run("program", "start", "--file", str(run.write("e1.json", enrolment_doc("short"))))
    assert e1.exit_code == 2 and "rule E1" in e1.stderr, e1.output
    assert "2027-06-30" in e1.stderr and "2028-01-03" in e1.stderr
    # Every violation at once, so ops fix the file in one go.
    both = run("program", "start", "--file",
               str(run.write("both.json", enrolment_doc(term_months=18, additional_contacts=six))))
    assert both.exit_code == 2 and "rule C2" in both.stderr and "rule C4" in both.stderr


# ------------------------------------------------------------------ step payloads
def test_step_payload_checks_before_connecting(run: Offline) -> None:
    not_object = run("step", "complete", "acme", "schedule_kickoff", "--by", "tl-alice",
                     "--file", str(run.write("list.json", [1, 2])))
    assert not_object.exit_code == 2 and "must be an object" in not_object.stderr

    unknown = run("step", "complete", "acme", "launch_rocket", "--by", "tl-alice")
    assert unknown.exit_code == 2 and "unknown step 'launch_rocket'" in unknown.stderr
    assert "schedule_kickoff" in unknown.stderr

    bad_value = run("step", "complete", "acme", "schedule_kickoff", "--by", "tl-alice",
                    "--file", str(run.write("kickoff.yaml", "meeting_at: not a date\n")))
    assert bad_value.exit_code == 2 and "field meeting_at" in bad_value.stderr, bad_value.output

    bad_yaml = run("step", "complete", "acme", "schedule_kickoff", "--by", "tl-alice",
                   "--file", str(run.write("kickoff2.yaml", "meeting_at: [2027\n")))
    assert bad_yaml.exit_code == 2 and "invalid YAML at line" in bad_yaml.stderr, bad_yaml.output

    bad_price = run("step", "complete", "acme", "propose_renewal_price", "--by", "ops",
                    "--file", str(run.write("price.json", {"price": {"amount": "a lot"}})))
    assert bad_price.exit_code == 2 and "field price.amount" in bad_price.stderr, bad_price.output

    no_by = run("step", "complete", "acme", "schedule_kickoff")
    assert no_by.exit_code == 2 and "--by" in no_by.output


def test_notice_options_checked_before_connecting(run: Offline) -> None:
    bad_date = run("notice", "non-renewal", "acme", "--party", "customer", "--received-on", "2027-13-01",
                   "--reference", "X")
    assert bad_date.exit_code == 2 and "not a date" in bad_date.stderr
    bad_party = run("notice", "non-renewal", "acme", "--party", "nobody", "--received-on", "2027-10-01",
                    "--reference", "X")
    assert bad_party.exit_code == 2 and "field party" in bad_party.stderr, bad_party.output
    no_reference = run("notice", "non-renewal", "acme", "--party", "ot", "--received-on", "2027-10-01",
                       "--reference", "")
    assert no_reference.exit_code == 2 and "field reference" in no_reference.stderr, no_reference.output


# ------------------------------------------------------------------ maintenance import
def test_maintenance_import_bad_csv_imports_nothing(run: Offline) -> None:
    bad = run.write("bad.csv", "id,customer_id,start,end,contact_count\n"
                               "SMP-1,one,2026-01-01,2028-01-01,2\n"
                               "SMP-2,two,2026-01-01,2028-01-01,many\n")
    refused = run("maintenance", "import", str(bad), "--json")
    assert refused.exit_code == 2, refused.output
    assert "line 3, field contact_count" in refused.stderr and "nothing was imported" in refused.stderr
    assert refused.stdout == ""

    good = run.write("good.csv", "id,customer_id,start,end,contact_count\n"
                                 "SMP-1,one,2026-01-01,2028-01-01,2\n"
                                 "SMP-2,two,2026-01-01,2028-01-01,4\n")
    imported = run("maintenance", "import", str(good), "--json")
    assert imported.exit_code == 0, imported.output
    # SMP-1 is new: the refused file wrote nothing, not even its good row.
    assert json.loads(imported.stdout) | {"path": None} == {"path": None, "inserted": 2, "updated": 0, "total": 2}
    again = run("maintenance", "import", str(good), "--json")
    assert json.loads(again.stdout)["updated"] == 2


def test_maintenance_import_missing_file(run: Offline) -> None:
    result = run("maintenance", "import", str(run.tmp / "nowhere.csv"))
    assert result.exit_code == 2, result.output
    assert "cannot read" in result.stderr and "nowhere.csv" in result.stderr
    assert "cannot reach" not in result.stderr


def test_db_upgrade(run: Offline) -> None:
    result = run("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "database at head" in result.stdout


# ------------------------------------------------------------- Temporal not running
def test_temporal_unreachable_is_exit_1_without_traceback(tmp_path: Path) -> None:
    """A real process: the Temporal client's runtime must not crash the exit (temporalio/sdk-python#300)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TECHCONNECT_"))}
    env |= {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "TECHCONNECT_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "cli", "program", "status", "acme", "--json"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "cannot reach Temporal" in proc.stderr and env["TEMPORAL_ADDRESS"] in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# What `step list` must not load: Temporal's client, the other command groups, the workflows' status models.
NOT_FOR_STEP_LIST = ("temporalio", "cli.programs", "cli.requests", "cli.users", "starter.programs",
                     "storage.repositories.requests", "domain.program", "domain.cycle")

_STEP_LIST_IN_A_PROCESS = """
import json, sys
sys.argv = ["techconnect", "step", "list", "--json"]
from cli.app import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""


def test_step_list_starts_without_temporal_or_the_other_command_groups(tmp_path: Path) -> None:
    """Issue 16: the whole `step list` command under a second at 1,000 programmes, most of it the start.
    A command of one group imports that group only, and reading the inbox needs no Temporal client."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TECHCONNECT_"))}
    env |= {"TECHCONNECT_DATA_DIR": str(tmp_path), "TECHCONNECT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/t.db"}
    proc = subprocess.run([sys.executable, "-c", _STEP_LIST_IN_A_PROCESS], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    page_text, _, modules_line = proc.stdout.rstrip("\n").rpartition("\n")
    assert json.loads(page_text) == {"items": [], "total": 0, "page": 1, "pages": 1}
    loaded = json.loads(modules_line)
    assert "cli.steps" in loaded and "storage.repositories.open_steps" in loaded, loaded
    assert not [m for m in loaded if m.split(".")[0] in NOT_FOR_STEP_LIST or m in NOT_FOR_STEP_LIST]


GROUPS = ["program", "step", "notice", "maintenance", "db", "request", "user", "prices", "holidays", "extras",
          "projection"]


def test_every_command_group_is_checked_below_and_comes_alone() -> None:
    """A group added to the table `main()` uses is added to GROUPS too; a group alone brings no server command
    (`dev`, `worker`, ...): those come with the whole line. That `main()` loads only the group's module is shown
    in a process of its own (test_step_list_starts_without_temporal_or_the_other_command_groups)."""
    from cli.app import COMMAND_GROUPS, build_app

    assert set(GROUPS) == set(COMMAND_GROUPS)
    for name in GROUPS:
        alone = build_app(name)
        assert [g.name for g in alone.registered_groups] == [name] and alone.registered_commands == []


@pytest.mark.parametrize("group", GROUPS)
def test_a_command_run_by_main_finds_its_group_as_the_whole_command_line_has_it(
        group: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`main()` loads only the group the command names (issue 16: `step list` < 1 s): each group's help, through
    `main()` as the console script runs it, is the help the whole command line gives; the groups are named here,
    not read from the table `main()` uses, so a group missing from it or loading another module fails."""
    monkeypatch.setenv("COLUMNS", "120")
    whole = CliRunner().invoke(app, [group, "--help"], prog_name="techconnect")
    assert whole.exit_code == 0, whole.output
    monkeypatch.setattr(cli_module, "_cli_process", False)  # main() marks the process; restored after the test
    monkeypatch.setattr(sys, "argv", ["techconnect", group, "--help"])
    # As the console script runs it: a bare __main__, not pytest's (`python -m pytest` would name the program
    # after pytest's module in the usage line).
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    from cli.app import main

    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    assert capsys.readouterr().out == whole.output


def test_main_without_a_group_gives_the_whole_command_line(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli_module, "_cli_process", False)
    monkeypatch.setattr(sys, "argv", ["techconnect", "--help"])
    from cli.app import main

    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    listed = capsys.readouterr().out
    for command in ("dev", "worker", "portal", "program", "step", "request", "projection"):
        assert f" {command} " in listed, (command, listed)
