"""The site inventory document (rule D8, annex A7) and configuration findings (D9, A8)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, Field


class Server(BaseModel):
    hostname: str
    role: str = ""  # e.g. "front-end", "admin", "search"
    cpu_cores: int | None = None
    memory_gb: float | None = None
    os_name: str = ""  # e.g. "Windows Server", "RHEL"
    os_version: str = ""


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
        """A7 items left empty; an inventory may be submitted incomplete, but it says so."""
        missing = []
        if not self.servers:
            missing.append("hardware and operating system (servers)")
        if self.ot_product is None:
            missing.append("OT product")
        if not self.database_servers:
            missing.append("database servers")
        if not self.network_protocols:
            missing.append("network protocols")
        if not self.web_server:
            missing.append("web server")
        if not self.external_file_stores:
            missing.append("external file stores")
        return missing


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
