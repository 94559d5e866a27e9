"""HTML forms over the domain's pydantic models.

A form is a list of fields named after the model's paths (`agreed_dates.site_inventory`,
`customer.maintenance_subscription_id`). Submitted values become the model's input;
pydantic errors and rule violations (`RuleViolation.field`) come back to the field
whose name is the longest prefix of the error's path, so each message shows beside
the field it is about. What matches no field shows at the top of the form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from domain.errors import RuleViolation
from domain.inventory import Severity
from domain.step_inputs import A2_AGENDA, BillableExtraKind
from domain.steps import spec

Values = dict[str, Any]  # field name -> submitted text (str), or list[str] for multi-choice


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text email textarea date datetime number select checkbox lines records multi
    help: str = ""
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()
    columns: tuple[str, ...] = ()  # records: the keys of "a; b; c" lines
    record_defaults: tuple[tuple[str, str], ...] = ()
    default: str | tuple[str, ...] = ""
    placeholder: str = ""
    rows: int = 4
    width: str = "full"  # full | half | third


@dataclass
class FormErrors:
    fields: dict[str, list[str]] = field(default_factory=dict)
    top: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.top)

    def add(self, fields: Sequence[Field], path: str, message: str) -> None:
        match = field_for(fields, path)
        if match is None:
            self.top.append(f"{path}: {message}" if path else message)
            return
        rest = path[len(match.name):].lstrip(".")
        if rest and match.kind == "records":
            index, _, key = rest.partition(".")
            if index.isdigit():
                rest = f"line {int(index) + 1}" + (f", {key}" if key else "")
        elif rest and match.kind in ("lines", "multi"):
            rest = f"line {int(rest) + 1}" if rest.isdigit() else rest
        self.fields.setdefault(match.name, []).append(f"{rest}: {message}" if rest else message)

    def as_dict(self) -> dict[str, Any]:
        return {"fields": self.fields, "form": self.top}


def field_for(fields: Sequence[Field], path: str) -> Field | None:
    best: Field | None = None
    for f in fields:
        if (path == f.name or path.startswith(f.name + ".")) and (best is None or len(f.name) > len(best.name)):
            best = f
    return best


# ---- reading a submitted form ----------------------------------------------------------------


def submitted_values(fields: Sequence[Field], form: Any) -> Values:
    """The raw values, as typed (re-shown when the form comes back with errors)."""
    out: Values = {}
    for f in fields:
        if f.kind == "multi":
            out[f.name] = [str(v) for v in form.getlist(f.name)]
        else:
            raw = form.get(f.name)
            out[f.name] = str(raw) if isinstance(raw, str) else ""
    return out


def default_values(fields: Sequence[Field], overrides: Mapping[str, Any] | None = None) -> Values:
    out: Values = {}
    for f in fields:
        out[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    out.update(overrides or {})
    return out


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _local_datetime(text: str, tz: ZoneInfo) -> str:
    """`2027-01-12T10:00` typed in the programme's time zone -> ISO with its offset."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text  # pydantic names the problem
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.isoformat()


def to_payload(fields: Sequence[Field], values: Values, tz: ZoneInfo | None = None) -> dict[str, Any]:
    """Submitted text -> the model's input (nested dicts, lists, booleans)."""
    data: dict[str, Any] = {}
    for f in fields:
        raw = values.get(f.name)
        if f.kind == "checkbox":
            _set(data, f.name, raw in ("on", "true", "1", "yes"))
            continue
        if f.kind == "multi":
            _set(data, f.name, list(raw or []))
            continue
        text = (raw or "").strip() if isinstance(raw, str) else ""
        if f.kind == "lines":
            items = [line.strip() for line in text.splitlines() if line.strip()]
            if items or f.required:
                _set(data, f.name, items)
            continue
        if f.kind == "records":
            records = []
            for line in text.splitlines():
                if not line.strip():
                    continue
                cells = [c.strip() for c in line.split(";")]
                record: dict[str, Any] = dict(f.record_defaults)
                for key, cell in zip(f.columns, cells, strict=False):
                    if cell:
                        record[key] = cell
                records.append(record)
            if records or f.required:
                _set(data, f.name, records)
            continue
        if not text:
            continue  # the model's default, or pydantic's "missing" for a required field
        if f.kind == "datetime" and tz is not None:
            text = _local_datetime(text, tz)
        _set(data, f.name, text)
    return data


def friendly(err: ErrorDetails) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return "This field is required."
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return "Enter at least one line." if n == 1 else f"Enter at least {n} lines."
    if kind.startswith("date_"):
        return "Enter a date as YYYY-MM-DD."
    if kind.startswith("datetime_"):
        return "Enter a date and a time."
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    message = str(err["msg"])
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def validation_errors(fields: Sequence[Field], exc: ValidationError, *, skip: Iterable[str] = ("by",)) -> FormErrors:
    errors = FormErrors()
    skipped = set(skip)
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        if path in skipped:
            continue
        errors.add(fields, path, friendly(err))
    return errors


def violation_errors(fields: Sequence[Field], violations: Iterable[RuleViolation]) -> FormErrors:
    errors = FormErrors()
    for v in violations:
        message = f"Rule {v.rule}: {v.message}"
        if v.field and field_for(fields, v.field):
            errors.add(fields, v.field, message)
        else:
            errors.top.append(message)
    return errors


def parse(model: type[BaseModel], fields: Sequence[Field], values: Values, *, extra: Mapping[str, Any] | None = None,
          tz: ZoneInfo | None = None) -> tuple[BaseModel | None, FormErrors]:
    payload = to_payload(fields, values, tz)
    payload.update(extra or {})
    try:
        return model.model_validate(payload), FormErrors()
    except ValidationError as exc:
        return None, validation_errors(fields, exc)


# ---- the forms ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepForm:
    """The fields of one step's form; its title and rules come from the step registry (domain/steps.py)."""

    step: str
    intro: str
    fields: tuple[Field, ...]

    @property
    def title(self) -> str:
        return spec(self.step).title

    @property
    def rule(self) -> str:
        return spec(self.step).citation


_DATE_HELP = "YYYY-MM-DD"
_ATTENDEES = Field("attendees", "Attendees", "lines", "One person per line.", required=True, rows=3)

STEP_FORMS: dict[str, StepForm] = {f.step: f for f in (
    StepForm("schedule_kickoff",
             "The contacts get an invitation as soon as the meeting is scheduled.", (
                 Field("meeting_at", "Meeting date and time", "datetime", "In the programme's time zone.",
                       required=True, width="half"),
                 Field("attendance", "Attendance", "select", options=(("remote", "Remote"), ("on-site", "On site")),
                       default="remote", width="half"),
                 Field("location", "Location or meeting link", placeholder="Teams, or the site's address"),
             )),
    StepForm("complete_kickoff",
             "The minutes are filed in the workspace; the agreed dates replace the default due dates.", (
                 Field("held_on", "Held on", "date", _DATE_HELP, required=True, width="half"),
                 _ATTENDEES,
                 Field("minutes", "Minutes", "textarea", required=True, rows=6),
                 Field("agreed_dates.communication_plan", "Communication plan due", "date", width="third"),
                 Field("agreed_dates.site_inventory", "Site inventory due", "date", width="third"),
                 Field("agreed_dates.configuration_analysis", "Configuration analysis due", "date", width="third"),
                 Field("agreed_dates.call_day_of_month", "Follow-up calls on day (D6)", "number",
                       "1 to 31 (31: each month's last day); the next cycles' call is due that day.", width="half"),
                 Field("agreed_dates.report_frequency_months", "Follow-up report every N months (C10)", "number",
                       "Leave empty to keep the current frequency.", width="half"),
                 Field("agenda_covered", "Agenda covered (A2)", "multi",
                       options=tuple((a, a[:1].upper() + a[1:]) for a in A2_AGENDA), default=tuple(A2_AGENDA)),
             )),
    StepForm("deliver_communication_plan",
             "Filed in the workspace and mailed to the contacts.", (
                 Field("communication_policies", "Communication policies", "textarea", required=True),
                 Field("escalation_process", "Escalation process", "textarea", required=True),
                 Field("reporting_process", "Reporting process", "textarea", required=True),
                 Field("procedures", "Procedures between OT support and the customer", "textarea", required=True),
             )),
    *(StepForm(step, "Every item of annex A7; each version is filed in the workspace and the "
               "rule-based configuration checks run on it (A8).", (
                   Field("inventory.ot_product.name", "OT product", default="Content Server", width="third"),
                   Field("inventory.ot_product.version", "Version", width="third"),
                   Field("inventory.ot_product.patch_level", "Patch level", placeholder="2024-06", width="third"),
                   Field("inventory.servers", "Servers", "records",
                         "One per line: hostname; role; OS name; OS version.",
                         columns=("hostname", "role", "os_name", "os_version"), rows=3),
                   Field("inventory.database_servers", "Database servers", "records",
                         "One per line: engine; version; hostname; last backup (YYYY-MM-DD); restore tested on.",
                         columns=("engine", "version", "hostname", "last_backup_on", "backup_tested_on"), rows=2),
                   Field("inventory.third_party_products", "Third-party products", "records",
                         "One per line: name; version; vendor.", columns=("name", "version", "vendor"), rows=2),
                   Field("inventory.external_file_stores", "External file stores", "lines", rows=2, width="half"),
                   Field("inventory.network_protocols", "Network protocols", "lines", rows=2, width="half"),
                   Field("inventory.utilities", "Utilities", "lines", rows=2, width="half"),
                   Field("inventory.custom_software", "Custom software", "lines", rows=2, width="half"),
                   Field("inventory.web_server", "Web server", placeholder="Tomcat 9.0.85", width="half"),
                   Field("inventory.storage_network", "Storage network", "text", "Where there is one.", width="half"),
                   Field("inventory.security.tls_min_version", "Minimum TLS version", "select",
                         options=(("", "unknown"), ("1.0", "1.0"), ("1.1", "1.1"), ("1.2", "1.2"), ("1.3", "1.3")),
                         width="third"),
                   Field("inventory.security.admin_password_rotation_days", "Admin password rotation (days)",
                         "number", width="third"),
                   Field("inventory.monitoring", "Monitoring", width="third"),
                   Field("inventory.security.http_enabled", "Plain HTTP still listening", "checkbox", width="third"),
                   Field("inventory.security.sso_enabled", "Single sign-on", "checkbox", width="third"),
                   Field("inventory.security.audit_logging", "Audit logging", "checkbox", width="third"),
                   Field("inventory.security.antivirus_on_storage", "Antivirus on storage", "checkbox",
                         width="third"),
                   Field("inventory.high_availability", "High availability", "checkbox", width="third"),
                   Field("inventory.notes", "Notes", "textarea", rows=3),
               )) for step in ("submit_site_inventory", "update_site_inventory")),
    StepForm("add_findings",
             "Added to the rule-based findings; the reviewed findings are filed in the workspace.", (
                 Field("role", "Findings of", "select", options=(("gts", "GTS"), ("tl", "Technical Lead")),
                       default="gts", width="half"),
                 Field("findings", "Findings", "records",
                       "One per line: severity (" + ", ".join(s.value for s in Severity)
                       + "); title; detail; recommendation. Leave empty if GTS has nothing to add.",
                       columns=("severity", "title", "detail", "recommendation"),
                       record_defaults=(("check_id", "HUMAN"),), rows=5),
             )),
    StepForm("present_configuration_analysis",
             "The presentation is filed in the workspace.", (
                 Field("held_on", "Held on", "date", _DATE_HELP, required=True, width="half"),
                 _ATTENDEES,
                 Field("notes", "Notes", "textarea"),
             )),
    StepForm("schedule_call",
             "The contacts get a calendar invitation (.ics).", (
                 Field("call_at", "Call date and time", "datetime", "In the programme's time zone.", required=True,
                       width="half"),
                 Field("duration_minutes", "Duration (minutes)", "number", default="60", width="half"),
                 Field("dial_in", "Dial-in or meeting link"),
                 Field("agenda", "Agenda", "textarea",
                       default="Open and closed issues, tasks, coming events and changes, planning (A5)", rows=2),
             )),
    StepForm("hold_call",
             "The notes feed this month's written report (A6).", (
                 Field("held_on", "Held on", "date", _DATE_HELP, required=True, width="half"),
                 _ATTENDEES,
                 Field("notes", "Call notes", "textarea", required=True, rows=6),
             )),
    StepForm("approve_report",
             "The report was drafted after the month ended (D7). Once approved, it is mailed to the contacts and "
             "filed in the workspace; until then the customer does not see it.", (
                 Field("comments", "Comments", "textarea", "Optional; kept with the report's history."),
             )),
    StepForm("send_back_report",
             "The report is drafted again from the database, as a new version; your comments are kept with the "
             "report's history and shown to staff, never to the customer (D7).", (
                 Field("comments", "What to change", "textarea", required=True, rows=4),
                 Field("call_notes", "Corrected call notes", "textarea",
                       "Optional; replaces the call's notes in the next draft.", rows=4),
             )),
    StepForm("record_extra_call",
             "A second call in the same month is a billable extra under its written agreement; it is listed "
             "in the month's report and the final report.", (
                 Field("held_on", "Held on", "date", _DATE_HELP, required=True, width="half"),
                 Field("agreement_ref", "Agreement reference", help="The written agreement for the extra (C3).",
                       required=True, width="half"),
                 Field("notes", "Call notes", "textarea", required=True, rows=4),
             )),
    StepForm("record_extra_report",
             "A report beyond the cycle's included one is a billable extra under its written agreement (C10); "
             "it is listed in the report and the final report.", (
                 Field("delivered_on", "Delivered on", "date", _DATE_HELP, required=True, width="half"),
                 Field("agreement_ref", "Agreement reference", help="The written agreement for the extra (C3).",
                       required=True, width="half"),
                 Field("description", "What the report covered", "textarea", required=True, rows=4),
             )),
)}


ENROLMENT_FIELDS: tuple[Field, ...] = (
    Field("customer.id", "Customer ID", help="Lower-case letters, digits and dashes; part of every workflow ID.",
          required=True, width="third", placeholder="acme"),
    Field("customer.name", "Customer name", required=True, width="third"),
    Field("customer.maintenance_subscription_id", "Maintenance subscription", help="From the registry (rule E1).",
          required=True, width="third", placeholder="SMP-1001"),
    Field("period_start", "Period start", "date", required=True, width="third"),
    Field("term_months", "Term (months)", "number", "12 unless agreed otherwise in writing (C2).", default="12",
          width="third"),
    Field("written_agreement_ref", "Written agreement reference", width="third"),
    Field("technical_lead", "Technical Lead", "select", required=True, width="half"),
    Field("primary_system", "Primary production system", required=True, width="half"),
    Field("primary_contact.name", "Primary contact", width="third"),
    Field("primary_contact.email", "Primary contact e-mail", "email", width="third"),
    Field("primary_contact.role", "Primary contact role", width="third"),
    Field("additional_contacts", "Additional contacts", "records",
          "One per line: name; e-mail; role. At most 5 at enrolment (C4).", columns=("name", "email", "role"), rows=3),
    Field("accept_extra_contact_fees", "The customer accepts the fee for contacts beyond 15 (C4)", "checkbox"),
    Field("products", "Products in scope", "records", "One per line: name; version (C9).",
          columns=("name", "version"), default="Content Server; 23.4", rows=2),
    Field("additional_systems", "Additional systems", "lines", "Each is a billable extra (C1).", rows=2,
          width="half"),
    Field("additional_systems_agreement_ref", "Agreement for additional systems", width="half"),
    Field("calendar.timezone", "Time zone", default="Europe/Paris", width="third"),
    Field("calendar.country", "Public holidays of", default="FR", width="third"),
    Field("calendar.subdivision", "Subdivision", width="third"),
    Field("annual_fee.amount", "Annual fee", "number", required=True, width="half", placeholder="48000.00"),
    Field("annual_fee.currency", "Currency", default="EUR", width="half"),
)

REQUEST_FIELDS: tuple[Field, ...] = (
    Field("summary", "Summary", required=True, placeholder="What is wrong, in one line"),
    Field("kind", "Kind", "select", options=(("support", "Support"), ("product", "Product"),
                                             ("advisory", "Advisory"), ("training", "Training")),
          default="support", width="half"),
    Field("priority", "Priority", "select", "Agreed with the support representative (A4).",
          options=(("critical", "Critical"), ("high", "High"), ("medium", "Medium"), ("low", "Low")),
          default="medium", width="half"),
    Field("description", "Description", "textarea", rows=6),
    Field("customisation", "This is about a customisation of an OT product (C13)", "checkbox"),
    Field("agreement_ref", "Agreement reference", help="Needed for a customisation (C13)."),
)

CONTACT_NOTICE_FIELDS: tuple[Field, ...] = (
    Field("reference", "Your reference", help="Letter or ticket reference; we make one up when empty."),
    Field("confirm", "We do not wish to renew the TechConnect programme at the end of the current period",
          "checkbox"),
)

OPS_NOTICE_FIELDS: tuple[Field, ...] = (
    Field("customer_id", "Customer", "select", required=True, width="third"),
    Field("party", "Given by", "select", options=(("customer", "The customer"), ("ot", "OpenText")),
          default="customer", width="third"),
    Field("received_on", "Received on", "date", "The day the written notice arrived (C16).", required=True,
          width="third"),
    Field("reference", "Reference", "text", "The letter's reference.", required=True),
)

EXTRA_FIELDS: tuple[Field, ...] = (
    Field("customer_id", "Customer", "select", required=True, width="third"),
    Field("kind", "Kind", "select", options=tuple((k.value, k.value.replace("_", " ")) for k in BillableExtraKind),
          width="third"),
    Field("agreement_ref", "Agreement reference", help="Every extra needs a separate agreement (C3).", required=True,
          width="third"),
    Field("description", "Description", required=True, width="half"),
    Field("quantity", "Quantity", "number", "Units, months or periods, as OT's price list counts this kind.",
          default="1", width="third"),
    # Rule C3: the price comes from OT's list; an amount typed here overrides it and says why.
    Field("amount.amount", "Amount (override)", "number",
          "Leave empty: the price comes from OT's price list in force today (quantity × unit price).",
          width="third"),
    Field("amount.currency", "Currency", default="EUR", width="third"),
    Field("override_reason", "Reason for the override", help="Required with an amount (C3).", width="half"),
)

ENROLMENT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Customer and term (E1, C2)", ("customer.id", "customer.name", "customer.maintenance_subscription_id",
                                    "period_start", "term_months", "written_agreement_ref")),
    ("Technical Lead and scope (C1, C9)", ("technical_lead", "primary_system", "products", "additional_systems",
                                           "additional_systems_agreement_ref")),
    ("Contacts (C4)", ("primary_contact.name", "primary_contact.email", "primary_contact.role",
                       "additional_contacts", "accept_extra_contact_fees")),
    ("Business calendar and fee (C5)", ("calendar.timezone", "calendar.country", "calendar.subdivision",
                                        "annual_fee.amount", "annual_fee.currency")),
)
