"""Rule-based configuration analysis (rule D9, annex A8).

GTS compares the OT product's configuration with OT's recommended practice and lists
improvements. The checks below are the part a machine can do from the site inventory
(A7); GTS and the TL add their own findings afterwards (`AddFindings`).

Every check is a pure function of the inventory and `as_of`, so the same inventory
always gives the same findings in the same order. It is called from an activity, never
from workflow code: changing a rule or a support window here must not change the
history of a running programme (see activities/documents.py).

Support windows and thresholds are "our reading" of vendor lifecycles, kept in one
`AnalysisThresholds` model and a few tables, not scattered through the checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial

from pydantic import BaseModel

from domain.calendar import add_months
from domain.inventory import DatabaseServer, Finding, InstalledProduct, Server, Severity, SiteInventory


class AnalysisThresholds(BaseModel):
    """Every tunable number of the A8 checks, so a setting can change them."""

    patch_max_age_months: int = 6
    backup_max_age_days: int = 7
    restore_test_max_age_days: int = 180
    admin_password_rotation_max_days: int = 90
    min_tls_version: tuple[int, int] = (1, 2)
    min_front_end_memory_gb: float = 16.0
    # OT CE releases (YY.Q) get this many years of support from their release quarter.
    ot_release_support_years: int = 3
    min_tomcat_major: int = 9
    min_iis_major: int = 10


@dataclass(frozen=True)
class SupportWindow:
    """What "out of support" means for one product family.

    `min_version`: anything below is out of support whatever the date (the floor the
    brief names, e.g. SQL Server < 2016). `ends`: known end-of-support dates of the
    versions at or above the floor, so a version also expires with `as_of`.
    """

    name: str
    min_version: int
    ends: dict[int, date] = field(default_factory=dict)


# Versions are normalised to one integer per family: SQL Server and Windows Server to
# their release year, the others to their major version.
DATABASE_SUPPORT: dict[str, SupportWindow] = {
    "sql server": SupportWindow("SQL Server", 2016, {
        2016: date(2026, 7, 14), 2017: date(2027, 10, 12), 2019: date(2030, 1, 8), 2022: date(2033, 1, 11),
    }),
    "oracle": SupportWindow("Oracle Database", 19),
    "postgres": SupportWindow("PostgreSQL", 13, {
        13: date(2025, 11, 13), 14: date(2026, 11, 12), 15: date(2027, 11, 11), 16: date(2028, 11, 9),
        17: date(2029, 11, 8),
    }),
    "hana": SupportWindow("SAP HANA", 2),
    "mysql": SupportWindow("MySQL", 8),
}

OS_SUPPORT: dict[str, SupportWindow] = {
    "windows": SupportWindow("Windows Server", 2016, {
        2016: date(2027, 1, 12), 2019: date(2029, 1, 9), 2022: date(2031, 10, 14),
    }),
    "rhel": SupportWindow("Red Hat Enterprise Linux", 8, {8: date(2029, 5, 31), 9: date(2032, 5, 31)}),
    "sles": SupportWindow("SUSE Linux Enterprise Server", 15),
    "oracle linux": SupportWindow("Oracle Linux", 8),
    "ubuntu": SupportWindow("Ubuntu", 20),
}

# OT products by the floor of supported major versions. CE versions are YY.Q (e.g.
# 23.4) and also expire `ot_release_support_years` after their release quarter.
OT_PRODUCT_SUPPORT: dict[str, SupportWindow] = {
    "content server": SupportWindow("Content Server", 22),
    "extended ecm": SupportWindow("Extended ECM", 22),
    "documentum": SupportWindow("Documentum", 22),
    "archive center": SupportWindow("Archive Center", 22),
    "intelligent viewing": SupportWindow("Intelligent Viewing", 22),
    "brava": SupportWindow("Brava!", 22),
}

# SQL Server reports an internal major version (e.g. 15.0.4153); map it to the year.
_SQL_SERVER_INTERNAL = {10: 2008, 11: 2012, 12: 2014, 13: 2016, 14: 2017, 15: 2019, 16: 2022}

# Protocols that send credentials or content in clear text, or are known-broken:
# normalised name -> (problem, what to use instead).
_INSECURE_PROTOCOLS: dict[str, tuple[str, str]] = {
    "ftp": ("FTP sends credentials and content in clear text", "Use SFTP or FTPS."),
    "telnet": ("Telnet sends credentials in clear text", "Use SSH."),
    "smbv1": ("SMBv1 is deprecated and exploitable (WannaCry)", "Disable SMBv1; use SMB 3."),
    "smb1": ("SMBv1 is deprecated and exploitable (WannaCry)", "Disable SMBv1; use SMB 3."),
    "snmpv1": ("SNMPv1 has clear-text community strings", "Use SNMPv3."),
    "snmpv2": ("SNMPv2c has clear-text community strings", "Use SNMPv3."),
    "snmpv2c": ("SNMPv2c has clear-text community strings", "Use SNMPv3."),
    "ldap": ("plain LDAP binds send passwords in clear text", "Use LDAPS or StartTLS."),
    "sslv3": ("SSLv3 is broken (POODLE)", "Use TLS 1.2 or later."),
}

_VERSION = re.compile(r"(\d+)(?:\.(\d+))?")
_YEAR = re.compile(r"(?<!\d)(19\d{2}|20\d{2})(?!\d)")
_YEAR_MONTH = re.compile(r"(?<!\d)(20\d{2})-(0[1-9]|1[0-2])(?!\d)")
_TOMCAT = re.compile(r"tomcat\D{0,10}?(\d+)")
_IIS = re.compile(r"\biis\D{0,10}?(\d+)")


# ---- parsing helpers (never raise: inventories are typed in by people) ----------------


def _version(text: str) -> tuple[int, int | None] | None:
    """First `major[.minor]` in `text`; digit runs are capped so int() never explodes."""
    m = _VERSION.search(text)
    if m is None:
        return None
    major = int(m.group(1)[:9])
    minor = int(m.group(2)[:9]) if m.group(2) else None
    return major, minor


def _year(text: str) -> int | None:
    m = _YEAR.search(text)
    return int(m.group(1)) if m else None


def _family(name: str, table: dict[str, SupportWindow]) -> SupportWindow | None:
    low = name.lower()
    return next((w for key, w in table.items() if key in low), None)


def _support_verdict(window: SupportWindow, version: int, as_of: date) -> str | None:
    """Why `version` is out of support on `as_of`, or None when it is supported."""
    if version < window.min_version:
        return f"below {window.name} {window.min_version}, the oldest version still supported"
    end = window.ends.get(version)
    if end is not None and end < as_of:
        return f"its support ended on {end.isoformat()}"
    return None


def _days_before(d: date, days: int) -> date:
    """`d - days`, saturating at date.min: `as_of` may be any date, the checks must not raise."""
    try:
        return d - timedelta(days=days)
    except OverflowError:
        return date.min


def _months_before(d: date, months: int) -> date:
    try:
        return add_months(d, -months)
    except (ValueError, OverflowError):
        return date.min


def _ce_release_date(major: int, minor: int | None) -> date | None:
    """Release quarter of an OT CE version YY.Q (20.2 -> 2020-04-01); None for older schemes."""
    if not 20 <= major <= 99 or minor is None or not 1 <= minor <= 4:
        return None
    return date(2000 + major, (minor - 1) * 3 + 1, 1)


def _patch_date(product: InstalledProduct) -> date | None:
    """The patch date, or the month a patch label like "2024-03 update" names."""
    if product.patch_date is not None:
        return product.patch_date
    m = _YEAR_MONTH.search(product.patch_level)
    return date(int(m.group(1)), int(m.group(2)), 1) if m else None


def _sql_server_year(version: str) -> int | None:
    year = _year(version)
    if year is not None:
        return year
    v = _version(version)
    return _SQL_SERVER_INTERNAL.get(v[0]) if v else None


def _db_version(db: DatabaseServer, window: SupportWindow) -> int | None:
    if window.name == "SQL Server":
        return _sql_server_year(db.version)
    v = _version(db.version)
    return v[0] if v else None


def _os_version(server: Server, window: SupportWindow) -> int | None:
    text = f"{server.os_name} {server.os_version}"
    if window.name == "Windows Server":
        return _year(text)
    v = _version(server.os_version) or _version(server.os_name)
    return v[0] if v else None


def _os_family(server: Server) -> SupportWindow | None:
    name = server.os_name.lower()
    if "red hat" in name:
        return OS_SUPPORT["rhel"]
    if "suse" in name:
        return OS_SUPPORT["sles"]
    return _family(name, OS_SUPPORT)


def _is_front_end(server: Server) -> bool:
    role = server.role.lower().replace("-", "").replace(" ", "")
    return "frontend" in role or role in {"web", "fe"}


def _label(server: Server) -> str:
    return f"{server.hostname} ({server.role})" if server.role else server.hostname


def _finding(check_id: str, title: str, severity: Severity, detail: str, recommendation: str) -> Finding:
    return Finding(check_id=check_id, title=title, severity=severity, detail=detail, recommendation=recommendation)


Check = Callable[[SiteInventory, date, AnalysisThresholds], Iterable[Finding]]


# ---- the checks (rule A8), one stable ID each ---------------------------------------


def _ot_product_support(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    p = inv.ot_product
    if p is None:
        return
    v = _version(p.version)
    if v is None:
        yield _finding("CFG-001", "OT product version cannot be checked", Severity.medium,
                       f"{p.name} version {p.version!r} is not a version number",
                       "Record the exact installed version (e.g. 23.4) in the site inventory.")
        return
    major, minor = v
    window = _family(p.name, OT_PRODUCT_SUPPORT)
    reason = _support_verdict(window, major, as_of) if window else None
    released = _ce_release_date(major, minor)
    if reason is None and released is not None:
        expires = add_months(released, 12 * t.ot_release_support_years)
        if expires <= as_of:
            reason = (f"released in {released.isoformat()[:7]}, more than {t.ot_release_support_years} years "
                      f"before {as_of.isoformat()}")
    if reason:
        yield _finding("CFG-001", "OT product version out of support", Severity.critical,
                       f"{p.name} {p.version} is out of support: {reason}",
                       f"Plan an upgrade of {p.name} to a current CE release; until then, fixes and patches "
                       f"may no longer be available.")


def _ot_product_patch(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    p = inv.ot_product
    if p is None:
        return
    patched = _patch_date(p)
    if patched is None:
        yield _finding("CFG-002", "OT product patch level unknown", Severity.medium,
                       f"{p.name} {p.version}: no patch level date recorded (patch level {p.patch_level!r})",
                       "Record the installed cumulative update / patch and its date; apply the latest one.")
        return
    limit = _months_before(as_of, t.patch_max_age_months)
    if patched < limit:
        yield _finding("CFG-002", "OT product patch level out of date", Severity.high,
                       f"{p.name} {p.version} patch level {p.patch_level or '(unnamed)'} dates from "
                       f"{patched.isoformat()}, more than {t.patch_max_age_months} months before {as_of.isoformat()}",
                       "Apply the latest cumulative update; review OT patch notifications each month (A1).")


def _tls(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    raw = inv.security.tls_min_version.strip()
    v = _version(raw)
    wanted = f"{t.min_tls_version[0]}.{t.min_tls_version[1]}"
    if v is None:
        observed = f"minimum TLS version {raw!r} is not a version number" if raw else "no minimum TLS version recorded"
        yield _finding("CFG-003", "Minimum TLS version not set", Severity.medium,
                       f"{observed}, so older protocols may be accepted",
                       f"Set the minimum TLS version to {wanted} or later on every listener.")
    elif (v[0], v[1] or 0) < t.min_tls_version:
        yield _finding("CFG-003", "Weak minimum TLS version", Severity.high,
                       f"minimum TLS version is {raw}, below {wanted}",
                       f"Disable TLS versions below {wanted} on web servers, load balancers and database links.")


def _unless(check_id: str, ok: Callable[[SiteInventory], bool], title: str, severity: Severity, detail: str,
            recommendation: str) -> Check:
    """The check of one setting: a single finding when the inventory lacks it."""

    def check(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
        if not ok(inv):
            yield _finding(check_id, title, severity, detail, recommendation)

    return check


_plain_http = _unless("CFG-004", lambda inv: not inv.security.http_enabled, "Plain HTTP enabled", Severity.medium,
                      "plain HTTP is still listening (http_enabled = true)",
                      "Redirect HTTP to HTTPS and close the plain HTTP listener; enable HSTS.")


# What a dated database check says: (title, severity, detail, recommendation); detail and recommendation
# are formatted with the database's `name`, its date `on`, the `age` in days, `as_of` and the limit `days`.
_Texts = tuple[str, Severity, str, str]


def _by_last_date(check_id: str, last: Callable[[DatabaseServer], date | None],
                  max_age: Callable[[AnalysisThresholds], int], never: _Texts, too_old: _Texts) -> Check:
    """The check that each database's `last` date is recorded (else `never`) and at most `max_age` days
    old (else `too_old`)."""

    def check(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
        days = max_age(t)
        for db in inv.database_servers:
            on = last(db)
            if on is None or on < _days_before(as_of, days):
                title, severity, detail, advice = never if on is None else too_old
                values = {"name": f"{db.engine} {db.version} on {db.hostname or 'unknown host'}", "on": on,
                          "age": (as_of - on).days if on else None, "as_of": as_of, "days": days}
                yield _finding(check_id, title, severity, detail.format(**values), advice.format(**values))

    return check


_backups = _by_last_date("CFG-005", lambda db: db.last_backup_on, lambda t: t.backup_max_age_days, (
    "No database backup recorded", Severity.critical, "{name}: no backup recorded",
    "Schedule a full backup at least every {days} days, with transaction log backups in between."), (
    "Database backup too old", Severity.high, "{name}: last backup on {on}, {age} days before {as_of}",
    "Back up at least every {days} days and monitor backup jobs."))

_restore_tests = _by_last_date("CFG-006", lambda db: db.backup_tested_on, lambda t: t.restore_test_max_age_days, (
    "Backup never restore-tested", Severity.high, "{name}: no restore test recorded",
    "Restore a backup to a test system at least every {days} days, together with the matching external file store."), (
    "Restore test too old", Severity.medium, "{name}: last restore test on {on}, more than {days} days before {as_of}",
    "Restore-test backups at least every {days} days."))


def _out_of_support(window: SupportWindow | None, version: Callable[[SupportWindow], int | None],
                    as_of: date) -> str | None:
    """Why a component is out of support; None too when its family or version is unknown (nothing to judge)."""
    if window is None:
        return None
    v = version(window)
    return _support_verdict(window, v, as_of) if v is not None else None


def _database_support(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    for db in inv.database_servers:
        if reason := _out_of_support(_family(db.engine, DATABASE_SUPPORT), partial(_db_version, db), as_of):
            yield _finding("CFG-007", "Database engine out of support", Severity.high,
                           f"{db.engine} {db.version} on {db.hostname or 'unknown host'} is out of support: {reason}",
                           "Upgrade the database to a version on the OT product's release compatibility matrix.")


def _os_support(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    for server in inv.servers:
        if reason := _out_of_support(_os_family(server), partial(_os_version, server), as_of):
            yield _finding("CFG-008", "Operating system out of support", Severity.high,
                           f"{_label(server)} runs {server.os_name} {server.os_version}".rstrip()
                           + f", out of support: {reason}",
                           "Move the server to a supported operating system release listed in the OT release notes.")


def _high_availability(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    if not inv.servers:
        return  # nothing to judge yet; CFG-017 reports the missing servers
    if not inv.high_availability or len(inv.servers) < 2:
        yield _finding("CFG-009", "No high availability", Severity.medium,
                       f"production runs on {len(inv.servers)} server(s) with high_availability = "
                       f"{str(inv.high_availability).lower()}",
                       "Run at least two front-end servers behind a load balancer and a clustered or replicated "
                       "database, so one failure does not stop production.")


_sso = _unless("CFG-010", lambda inv: inv.security.sso_enabled, "No single sign-on", Severity.low,
               "single sign-on is not enabled (sso_enabled = false)",
               "Authenticate users through OTDS with the corporate identity provider (SAML/OIDC/Kerberos).")


def _password_rotation(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    days = inv.security.admin_password_rotation_days
    if days is None or days <= 0:
        yield _finding("CFG-011", "Admin password never rotated", Severity.medium,
                       f"admin password rotation is {'not set' if days is None else f'{days} days'}",
                       f"Rotate administrator passwords at least every {t.admin_password_rotation_max_days} days "
                       f"and keep them in a vault.")
    elif days > t.admin_password_rotation_max_days:
        yield _finding("CFG-011", "Admin password rotated too rarely", Severity.medium,
                       f"admin passwords are rotated every {days} days, more than "
                       f"{t.admin_password_rotation_max_days}",
                       f"Rotate administrator passwords at least every {t.admin_password_rotation_max_days} days.")


def _antivirus(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    if not inv.security.antivirus_on_storage:
        stores = ", ".join(inv.external_file_stores) or "the document storage"
        yield _finding("CFG-012", "No antivirus on document storage", Severity.medium,
                       f"no antivirus scanning on {stores} (antivirus_on_storage = false)",
                       "Scan documents on upload, and exclude the storage from on-access scanning only where OT "
                       "recommends it.")


_audit_logging = _unless("CFG-013", lambda inv: inv.security.audit_logging, "Audit logging off", Severity.medium,
                         "audit logging is off (audit_logging = false)",
                         "Enable auditing of logins, permission changes and deletions; purge the audit table on "
                         "a schedule rather than disabling it.")

_monitoring = _unless("CFG-014", lambda inv: bool(inv.monitoring.strip()), "No monitoring", Severity.medium,
                      "no monitoring tool recorded for the production system",
                      "Monitor service availability, disk space, agents and search queues, with alerts to the "
                      "admin team.")


def _web_server(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    # The version is read after the product name: "Apache httpd 2.4 + Tomcat 8.5" is Tomcat 8.
    text = inv.web_server.lower()
    tomcat, iis = _TOMCAT.search(text), _IIS.search(text)
    if tomcat and int(tomcat.group(1)[:9]) < t.min_tomcat_major:
        yield _finding("CFG-015", "Web server out of support", Severity.high,
                       f"web server is {inv.web_server}, below Tomcat {t.min_tomcat_major}",
                       f"Upgrade to Tomcat {t.min_tomcat_major} or later, as the OT release notes list.")
    elif iis and int(iis.group(1)[:9]) < t.min_iis_major:
        yield _finding("CFG-015", "Web server out of support", Severity.high,
                       f"web server is {inv.web_server}, below IIS {t.min_iis_major}",
                       f"Move to IIS {t.min_iis_major} (Windows Server 2016 or later).")


def _front_end_memory(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    for server in inv.servers:
        if _is_front_end(server) and server.memory_gb is not None and server.memory_gb < t.min_front_end_memory_gb:
            yield _finding("CFG-016", "Insufficient memory on front-end server", Severity.medium,
                           f"{_label(server)} has {server.memory_gb:g} GB of memory, below "
                           f"{t.min_front_end_memory_gb:g} GB",
                           f"Give front-end servers at least {t.min_front_end_memory_gb:g} GB of memory.")


def _missing_items(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    missing = inv.missing_items()
    if missing:
        yield _finding("CFG-017", "Site inventory incomplete", Severity.info,
                       f"the site inventory does not list: {', '.join(missing)}",
                       "Complete the site inventory (A7) so the analysis covers every component.")


def _insecure_protocols(inv: SiteInventory, as_of: date, t: AnalysisThresholds) -> Iterable[Finding]:
    seen: set[str] = set()
    for proto in inv.network_protocols:
        key = re.sub(r"[^a-z0-9]", "", proto.lower())
        known = _INSECURE_PROTOCOLS.get(key)
        if known is not None and key not in seen:
            seen.add(key)
            problem, instead = known
            yield _finding("CFG-018", "Insecure network protocol in use", Severity.high,
                           f"network protocol {proto} is in use: {problem}", instead)


CHECKS: list[tuple[str, Check]] = [
    ("CFG-001", _ot_product_support),
    ("CFG-002", _ot_product_patch),
    ("CFG-003", _tls),
    ("CFG-004", _plain_http),
    ("CFG-005", _backups),
    ("CFG-006", _restore_tests),
    ("CFG-007", _database_support),
    ("CFG-008", _os_support),
    ("CFG-009", _high_availability),
    ("CFG-010", _sso),
    ("CFG-011", _password_rotation),
    ("CFG-012", _antivirus),
    ("CFG-013", _audit_logging),
    ("CFG-014", _monitoring),
    ("CFG-015", _web_server),
    ("CFG-016", _front_end_memory),
    ("CFG-017", _missing_items),
    ("CFG-018", _insecure_protocols),
]


def analyse_inventory(
    inventory: SiteInventory, as_of: date, thresholds: AnalysisThresholds | None = None
) -> list[Finding]:
    """Rule D9/A8: every recommended-practice finding for `inventory` on `as_of`, in check order."""
    t = thresholds or AnalysisThresholds()
    return [finding for _, check in CHECKS for finding in check(inventory, as_of, t)]
