"""The site inventory document (rule D8, annex A7, C11) and configuration findings (D9, A8)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.errors import RuleViolation


class Server(BaseModel):
    hostname: str
    role: str = ""  # e.g. "front-end", "admin", "search"
    cpu_cores: int | None = None
    memory_gb: float | None = None
    os_name: str = ""  # e.g. "Windows Server", "RHEL"
    os_version: str = ""
    # rule C11: the production system the server belongs to; empty means the programme's primary system.
    system: str = ""


class InstalledProduct(BaseModel):
    name: str
    version: str
    patch_level: str = ""  # e.g. "2024-03 update"
    patch_date: date | None = None
    vendor: str = "OpenText"


class DatabaseServer(BaseModel):
    engine: str  # "Oracle", "SQL Server", "PostgreSQL", "HANA"
    version: str
    hostname: str = ""
    last_backup_on: date | None = None
    backup_tested_on: date | None = None


class SecuritySettings(BaseModel):
    tls_min_version: str = ""  # "1.0", "1.1", "1.2", "1.3"
    http_enabled: bool = False  # plain HTTP still listening
    sso_enabled: bool = False
    admin_password_rotation_days: int | None = None
    antivirus_on_storage: bool = False
    audit_logging: bool = False


_JUDGED_BY_OWN_FINDING = {"inventory.servers.os_name", "inventory.security.tls_min_version"}


class SiteInventory(BaseModel):
    """Every item annex A7 lists, kept in the support tracking system."""

    servers: list[Server] = Field(default_factory=list)  # hardware + operating system
    ot_product: InstalledProduct | None = None
    third_party_products: list[InstalledProduct] = Field(default_factory=list)
    utilities: list[str] = Field(default_factory=list)
    custom_software: list[str] = Field(default_factory=list)
    external_file_stores: list[str] = Field(default_factory=list)
    database_servers: list[DatabaseServer] = Field(default_factory=list)
    network_protocols: list[str] = Field(default_factory=list)
    storage_network: str | None = None  # "where there is one"
    web_server: str = ""  # e.g. "Tomcat 9.0.85"
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    high_availability: bool = False
    monitoring: str = ""
    notes: str = ""

    def missing_items(self) -> list[str]:
        """A7 items left empty, by name: what the inventory document and finding CFG-017 flag. A server's
        missing OS name and a missing TLS version are refused (`missing_fields`) but not listed here, so
        the findings stay as they were (CFG-003 already reports the TLS version)."""
        return [name for field, name in self.missing_fields() if field not in _JUDGED_BY_OWN_FINDING]

    def missing_fields(self) -> list[tuple[str, str]]:
        """(field, item name) of every A7 item an inventory must document and leaves empty.

        Our reading of annex A7: the handbook says the inventory "will document" external file
        stores, database servers, network protocols, the storage network "if applicable", the web
        server and the security settings, and "may include" hardware, operating system, OT product,
        third-party products, utilities and custom software. Every OT production system has
        servers with an operating system and an OT product, so those are required too; third-party
        products, utilities, custom software and a storage network are listed where there are any
        (an empty list says there are none), so their absence is never a gap.
        """
        missing: list[tuple[str, str]] = []
        if not self.servers:
            missing.append(("inventory.servers", "hardware and operating system (servers)"))
        else:
            no_os = [s.hostname for s in self.servers if not s.os_name.strip()]
            if no_os:
                missing.append(("inventory.servers.os_name", f"operating system of {', '.join(no_os)}"))
        if self.ot_product is None:
            missing.append(("inventory.ot_product", "OT product"))
        if not self.database_servers:
            missing.append(("inventory.database_servers", "database servers"))
        if not self.network_protocols:
            missing.append(("inventory.network_protocols", "network protocols"))
        if not self.web_server.strip():
            missing.append(("inventory.web_server", "web server"))
        if not self.external_file_stores:
            missing.append(("inventory.external_file_stores", "external file stores"))
        if not self.security.tls_min_version.strip():
            missing.append(("inventory.security.tls_min_version", "security settings (minimum TLS version)"))
        return missing


def check_site_inventory(inventory: SiteInventory, primary_system: str,
                         additional_systems: list[str]) -> list[RuleViolation]:
    """Rules A7 and C11 on a submitted (or updated) site inventory; an empty list means accepted.

    A7: every item the inventory must document is there (`SiteInventory.missing_fields`).
    C11: the inventory and its configuration analysis cover the programme's production system;
    a server of another system is covered only when that system is an additional system of the
    programme, agreed and billed at enrolment (C1, C3).
    """
    v = [RuleViolation(rule="A7", field=field, message=f"the site inventory does not list the {name}")
         for field, name in inventory.missing_fields()]
    covered = {primary_system.strip().lower()} | {s.strip().lower() for s in additional_systems}
    for server in inventory.servers:
        system = server.system.strip()
        if system and system.lower() not in covered:
            agreed = ", ".join(additional_systems) or "none"
            v.append(RuleViolation(
                rule="C11", field="inventory.servers.system",
                message=f"server {server.hostname} belongs to {system!r}, which this programme does not cover: "
                        f"the inventory and the configuration analysis cover the production system "
                        f"{primary_system!r} and the additional systems agreed at enrolment ({agreed}); "
                        f"another system costs extra under a separate agreement (C1, C3)"))
    return v


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


class Finding(BaseModel):
    """One improvement against OT recommended practice (annex A8)."""

    check_id: str  # "CFG-001" for rule-based checks, "HUMAN" for GTS/TL additions
    title: str
    severity: Severity
    detail: str
    recommendation: str
    source: str = "rules"  # "rules", "gts", "tl"
    author: str | None = None
