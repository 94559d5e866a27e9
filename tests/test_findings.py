"""Rule-based configuration analysis (rule D9, annex A8): every check fires on a bad inventory, none on a good one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.findings import CHECKS, AnalysisThresholds, analyse_inventory
from domain.inventory import (
    DatabaseServer,
    Finding,
    InstalledProduct,
    SecuritySettings,
    Server,
    Severity,
    SiteInventory,
)

AS_OF = date(2025, 6, 1)


def good_inventory() -> SiteInventory:
    """A production system that follows every recommended practice on AS_OF."""
    return SiteInventory(
        servers=[
            Server(hostname="cs-fe1", role="front-end", cpu_cores=8, memory_gb=32,
                   os_name="Windows Server", os_version="2022"),
            Server(hostname="cs-fe2", role="front-end", cpu_cores=8, memory_gb=32,
                   os_name="Windows Server", os_version="2022"),
            Server(hostname="cs-adm", role="admin", cpu_cores=4, memory_gb=16, os_name="RHEL", os_version="9.4"),
        ],
        ot_product=InstalledProduct(name="Content Server", version="24.4", patch_level="2025-04 update",
                                    patch_date=date(2025, 4, 15)),
        third_party_products=[InstalledProduct(name="Brava!", version="24.4", vendor="OpenText")],
        utilities=["OTDS 24.4"],
        external_file_stores=[r"\\nas01\efs"],
        database_servers=[
            DatabaseServer(engine="PostgreSQL", version="16.3", hostname="db1",
                           last_backup_on=date(2025, 5, 31), backup_tested_on=date(2025, 3, 1)),
            DatabaseServer(engine="Microsoft SQL Server", version="2022", hostname="db2",
                           last_backup_on=date(2025, 5, 30), backup_tested_on=date(2025, 2, 1)),
        ],
        network_protocols=["HTTPS", "SMB 3", "LDAPS", "SNMPv3"],
        storage_network="FC SAN",
        web_server="Apache Tomcat 10.1.24",
        security=SecuritySettings(tls_min_version="1.2", http_enabled=False, sso_enabled=True,
                                  admin_password_rotation_days=60, antivirus_on_storage=True, audit_logging=True),
        high_availability=True,
        monitoring="Zabbix 7",
    )


@pytest.mark.rule("A8")
def test_good_inventory_has_no_findings() -> None:
    """Rule A8: nothing to improve means an empty list, not noise."""
    assert analyse_inventory(good_inventory(), AS_OF) == []


@dataclass
class Bad:
    check_id: str
    mutate: Callable[[SiteInventory], None]
    observed: str  # the observed value the detail must name
    severity: Severity | None = None
    as_of: date = AS_OF


def _ot(**changes: object) -> Callable[[SiteInventory], None]:
    def apply(inv: SiteInventory) -> None:
        assert inv.ot_product is not None
        for key, value in changes.items():
            setattr(inv.ot_product, key, value)
    return apply


def _db(index: int, **changes: object) -> Callable[[SiteInventory], None]:
    def apply(inv: SiteInventory) -> None:
        for key, value in changes.items():
            setattr(inv.database_servers[index], key, value)
    return apply


def _server(index: int, **changes: object) -> Callable[[SiteInventory], None]:
    def apply(inv: SiteInventory) -> None:
        for key, value in changes.items():
            setattr(inv.servers[index], key, value)
    return apply


def _security(**changes: object) -> Callable[[SiteInventory], None]:
    def apply(inv: SiteInventory) -> None:
        for key, value in changes.items():
            setattr(inv.security, key, value)
    return apply


def _set(**changes: object) -> Callable[[SiteInventory], None]:
    def apply(inv: SiteInventory) -> None:
        for key, value in changes.items():
            setattr(inv, key, value)
    return apply


BAD_CASES: list[Bad] = [
    Bad("CFG-001", _ot(version="16.2.11"), "16.2.11", Severity.critical),  # below the 22.x floor
    Bad("CFG-001", _ot(version="21.4"), "21.4", Severity.critical),  # CE release older than 3 years
    Bad("CFG-001", _ot(name="OpenText Documentum", version="20.2"), "20.2", Severity.critical),
    Bad("CFG-002", _ot(patch_date=date(2024, 10, 1)), "2024-10-01", Severity.high),
    Bad("CFG-002", _ot(patch_date=None, patch_level="2024-09 update"), "2024-09 update", Severity.high),
    Bad("CFG-002", _ot(patch_date=None, patch_level=""), "no patch level", Severity.medium),
    Bad("CFG-003", _security(tls_min_version="1.0"), "1.0", Severity.high),
    Bad("CFG-003", _security(tls_min_version="1.1"), "1.1", Severity.high),
    Bad("CFG-003", _security(tls_min_version=""), "no minimum TLS version recorded", Severity.medium),
    Bad("CFG-003", _security(tls_min_version="TLS"), "'TLS' is not a version", Severity.medium),
    Bad("CFG-004", _security(http_enabled=True), "http_enabled = true", Severity.medium),
    Bad("CFG-005", _db(0, last_backup_on=date(2025, 5, 20)), "2025-05-20", Severity.high),
    Bad("CFG-005", _db(1, last_backup_on=None), "no backup recorded", Severity.critical),
    Bad("CFG-006", _db(0, backup_tested_on=None), "no restore test", Severity.high),
    Bad("CFG-006", _db(1, backup_tested_on=date(2024, 11, 1)), "2024-11-01", Severity.medium),
    Bad("CFG-007", _db(1, version="2014"), "SQL Server 2014", Severity.high),
    Bad("CFG-007", _db(1, version="12.0.6024.0"), "12.0.6024.0", Severity.high),  # internal number of 2014
    Bad("CFG-007", _db(0, engine="Oracle", version="12.2.0.1"), "Oracle 12.2.0.1", Severity.high),
    Bad("CFG-007", _db(0, version="12.19"), "PostgreSQL 12.19", Severity.high),
    Bad("CFG-007", _db(0, version="13.15"), "2025-11-13", Severity.high, as_of=date(2025, 12, 1)),
    Bad("CFG-008", _server(0, os_version="2012 R2"), "2012 R2", Severity.high),
    Bad("CFG-008", _server(2, os_name="Red Hat Enterprise Linux", os_version="7.9"), "7.9", Severity.high),
    Bad("CFG-008", _server(2, os_name="SUSE Linux Enterprise Server", os_version="12 SP5"), "12 SP5"),
    Bad("CFG-009", _set(high_availability=False), "high_availability = false", Severity.medium),
    Bad("CFG-010", _security(sso_enabled=False), "sso_enabled = false", Severity.low),
    Bad("CFG-011", _security(admin_password_rotation_days=None), "not set", Severity.medium),
    Bad("CFG-011", _security(admin_password_rotation_days=365), "365 days", Severity.medium),
    Bad("CFG-012", _security(antivirus_on_storage=False), r"\\nas01\efs", Severity.medium),
    Bad("CFG-013", _security(audit_logging=False), "audit_logging = false", Severity.medium),
    Bad("CFG-014", _set(monitoring=""), "no monitoring", Severity.medium),
    Bad("CFG-015", _set(web_server="Apache Tomcat/8.5.100"), "Tomcat/8.5.100", Severity.high),
    Bad("CFG-015", _set(web_server="Microsoft IIS 8.5"), "IIS 8.5", Severity.high),
    Bad("CFG-016", _server(1, memory_gb=8), "8 GB", Severity.medium),
    Bad("CFG-017", _set(web_server=""), "web server", Severity.info),
    Bad("CFG-017", _set(network_protocols=["HTTPS"], external_file_stores=[]), "external file stores"),
    Bad("CFG-018", _set(network_protocols=["HTTPS", "FTP"]), "FTP", Severity.high),
    Bad("CFG-018", _set(network_protocols=["SMBv1"]), "SMBv1", Severity.high),
    Bad("CFG-018", _set(network_protocols=["SNMP v2c"]), "SNMP v2c", Severity.high),
]


@pytest.mark.rule("A8")
@pytest.mark.parametrize("case", BAD_CASES, ids=[f"{c.check_id}-{c.observed}" for c in BAD_CASES])
def test_check_fires_alone_and_names_the_observed_value(case: Bad) -> None:
    """Rule A8: each bad value gives exactly its own finding, whose detail names what was observed."""
    inv = good_inventory()
    case.mutate(inv)
    findings = analyse_inventory(inv, case.as_of)
    fired = {f.check_id for f in findings}
    if case.as_of == AS_OF:
        assert fired == {case.check_id}, findings
    else:  # a later date also ages the good inventory's patches and backups
        assert case.check_id in fired, findings
    finding = next(f for f in findings if f.check_id == case.check_id)
    assert case.observed in finding.detail
    assert finding.recommendation and finding.title
    assert finding.source == "rules"
    if case.severity is not None:
        assert finding.severity == case.severity


def test_at_least_twelve_distinct_checks_are_covered() -> None:
    covered = {c.check_id for c in BAD_CASES}
    registered = [check_id for check_id, _ in CHECKS]
    assert len(covered) >= 12
    assert covered == set(registered)
    assert len(registered) == len(set(registered)), "check IDs must be unique and stable"


def test_check_ids_are_stable_cfg_numbers() -> None:
    assert [check_id for check_id, _ in CHECKS] == [f"CFG-{n:03d}" for n in range(1, len(CHECKS) + 1)]


@pytest.mark.rule("A7", "A8")
def test_empty_inventory_reports_missing_items_and_security_gaps() -> None:
    findings = analyse_inventory(SiteInventory(), AS_OF)
    ids = [f.check_id for f in findings]
    assert "CFG-017" in ids
    missing = next(f for f in findings if f.check_id == "CFG-017")
    for item in SiteInventory().missing_items():
        assert item in missing.detail
    # Nothing to judge about servers or databases that are not listed.
    assert not {"CFG-005", "CFG-006", "CFG-007", "CFG-008", "CFG-009", "CFG-016"} & set(ids)


@pytest.mark.rule("A8")
def test_support_windows_move_with_as_of() -> None:
    """Same inventory, later date: a release ages out of support (only `as_of` changed)."""
    inv = good_inventory()
    assert analyse_inventory(inv, AS_OF) == []
    later = date(2029, 1, 1)  # PostgreSQL 16 support ended 2028-11-09
    late_ids = {f.check_id for f in analyse_inventory(inv, later)}
    assert {"CFG-001", "CFG-002", "CFG-005", "CFG-006", "CFG-007"} <= late_ids


def test_thresholds_are_settings() -> None:
    inv = good_inventory()
    inv.servers[0].memory_gb = 24
    assert analyse_inventory(inv, AS_OF) == []
    strict = AnalysisThresholds(min_front_end_memory_gb=64)
    assert {f.check_id for f in analyse_inventory(inv, AS_OF, strict)} == {"CFG-016"}


@pytest.mark.rule("A8")
def test_one_finding_per_bad_item() -> None:
    inv = good_inventory()
    for db in inv.database_servers:
        db.last_backup_on = None
    inv.network_protocols = ["FTP", "ftp", "Telnet"]
    findings = analyse_inventory(inv, AS_OF)
    assert [f.check_id for f in findings].count("CFG-005") == 2
    assert [f.check_id for f in findings].count("CFG-018") == 2  # FTP once, Telnet once


# ---- property: the analysis never raises, whatever people typed in -------------------

_versionish = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"[A-Za-z ]{0,8}\d{1,12}(\.\d{1,12}){0,3}( R2| SP\d)?", fullmatch=True),
    st.sampled_from(["2012 R2", "2016", "16.2.11", "23.4", "7.9", "1.0", "12.0.6024", "99.9", "0", ""]),
)
_names = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["Windows Server", "RHEL", "Red Hat", "SUSE", "Ubuntu", "Oracle Linux", "SQL Server", "Oracle",
                     "PostgreSQL", "HANA", "MySQL", "Content Server", "Extended ECM", "Documentum", "Tomcat 8.5",
                     "IIS 7", "FTP", "SMBv1", "SNMPv2c"]),
)
_dates = st.one_of(st.none(), st.dates())

inventories = st.builds(
    SiteInventory,
    servers=st.lists(st.builds(
        Server, hostname=st.text(max_size=20), role=st.one_of(st.text(max_size=15), st.just("front-end")),
        cpu_cores=st.one_of(st.none(), st.integers()), memory_gb=st.one_of(st.none(), st.floats()),
        os_name=_names, os_version=_versionish,
    ), max_size=4),
    ot_product=st.one_of(st.none(), st.builds(
        InstalledProduct, name=_names, version=_versionish, patch_level=st.one_of(st.text(max_size=20), _versionish),
        patch_date=_dates,
    )),
    third_party_products=st.lists(st.builds(InstalledProduct, name=_names, version=_versionish), max_size=2),
    utilities=st.lists(st.text(max_size=10), max_size=3),
    external_file_stores=st.lists(st.text(max_size=10), max_size=3),
    database_servers=st.lists(st.builds(
        DatabaseServer, engine=_names, version=_versionish, hostname=st.text(max_size=10),
        last_backup_on=_dates, backup_tested_on=_dates,
    ), max_size=3),
    network_protocols=st.lists(_names, max_size=4),
    storage_network=st.one_of(st.none(), st.text(max_size=10)),
    web_server=st.one_of(_names, _versionish),
    security=st.builds(
        SecuritySettings, tls_min_version=_versionish, http_enabled=st.booleans(), sso_enabled=st.booleans(),
        admin_password_rotation_days=st.one_of(st.none(), st.integers()), antivirus_on_storage=st.booleans(),
        audit_logging=st.booleans(),
    ),
    high_availability=st.booleans(),
    monitoring=st.text(max_size=10),
)


@settings(max_examples=300, deadline=None)
@given(inventory=inventories, as_of=st.dates())
def test_analysis_never_raises_and_is_deterministic(inventory: SiteInventory, as_of: date) -> None:
    """Inventories are typed in by people (A7); the analysis must cope with anything, the same way every time."""
    findings = analyse_inventory(inventory, as_of)
    assert findings == analyse_inventory(inventory.model_copy(deep=True), as_of)
    order = [check_id for check_id, _ in CHECKS]
    positions = [order.index(f.check_id) for f in findings]
    assert positions == sorted(positions), "findings come in check order"
    for finding in findings:
        assert isinstance(finding, Finding)
        assert finding.detail and finding.recommendation


@settings(max_examples=50, deadline=None)
@given(inventory=st.builds(SiteInventory), as_of=st.dates())
def test_analysis_never_raises_on_plain_builds(inventory: SiteInventory, as_of: date) -> None:
    analyse_inventory(inventory, as_of)
