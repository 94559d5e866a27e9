"""Settings from `TECHCONNECT_*` variables (and the standard `TEMPORAL_*` ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.naming import DEFAULT_TASK_QUEUE
from domain.policy import ProgramPolicy

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class TemporalSettings(BaseSettings):
    """Temporal's own environment names, so Temporal Cloud settings work unchanged."""

    model_config = SettingsConfigDict(env_prefix="TEMPORAL_", extra="ignore")

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    api_key: str | None = None
    tls: bool = False
    tls_client_cert_path: Path | None = None
    tls_client_key_path: Path | None = None
    tls_server_root_ca_cert_path: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TECHCONNECT_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = PROJECT_ROOT / ".data"
    database_url: str = ""  # default: SQLite file under data_dir
    task_queue: str = DEFAULT_TASK_QUEUE
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 20.0
    ui_url: str = "http://127.0.0.1:8233"
    portal_port: int = 8000
    policy: ProgramPolicy = Field(default_factory=ProgramPolicy)
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'techconnect.db'}"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"
