"""Settings from `TECHCONNECT_*` variables (and the standard `TEMPORAL_*` ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.secret_files import stored_secret
from domain.policy import ProgramPolicy
from domain.renewal import renewal_timing_problems

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASK_QUEUE = "techconnect"


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
    # Signs the portal's session cookies (TECHCONNECT_PORTAL_SECRET); unset: generated once into data_dir.
    portal_secret: str | None = None
    # Worker tuning (docs/scale.md); SDK defaults unless set.
    worker_max_concurrent_activities: int = Field(default=100, ge=1)
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=2)
    worker_max_cached_workflows: int = Field(default=1000, ge=0)  # sticky cache; 0 replays every task
    worker_graceful_shutdown_seconds: float = Field(default=20.0, ge=0)  # SIGTERM: in-flight activities finish
    # The worker's /metrics (Temporal SDK + techconnect_* business metrics); 0 turns it off.
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    # Payload encryption (config/codec.py): key id -> base64 of a 32-byte AES key, e.g.
    # TECHCONNECT_PAYLOAD_KEYS='{"k2": "...", "k1": "..."}' TECHCONNECT_PAYLOAD_KEY_ID=k2. New payloads are
    # encrypted with payload_key_id, any listed key decrypts (rotation). Unset: the key file
    # data_dir/payload-key.json if there is one (`techconnect dev` generates it), else payloads stay plain.
    # SecretStr: never shown by repr, str or logs.
    payload_keys: dict[str, SecretStr] = Field(default_factory=dict)
    payload_key_id: str | None = None
    # Codec server for the Temporal UI (devstack/codec_server.py); 0 turns it off in `techconnect dev`.
    codec_host: str = "127.0.0.1"
    codec_port: int = Field(default=8234, ge=0, le=65535)
    # Bearer token the codec server requires (TECHCONNECT_CODEC_TOKEN); unset: open, loopback only.
    codec_token: SecretStr | None = None
    codec_cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"])
    # Replies by mail to request mails (inbound/): the domain of the reply addresses, the secret of
    # their tokens (unset: generated once into data_dir), and the inbound SMTP receiver.
    reply_domain: str = "reply.techconnect.example"
    reply_secret: SecretStr | None = None
    inbound_host: str = "127.0.0.1"
    inbound_port: int = Field(default=8026, ge=0, le=65535)  # 0: `techconnect dev` starts no receiver
    inbound_max_bytes: int = Field(default=10_000_000, ge=1024)  # a bigger reply is quarantined
    policy: ProgramPolicy = Field(default_factory=ProgramPolicy)
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)

    @field_validator("policy")
    @classmethod
    def _renewal_sequence_in_order(cls, policy: ProgramPolicy) -> ProgramPolicy:
        """Rules C14, C16, E1: refuse settings that would send the renewal mails out of order."""
        problems = renewal_timing_problems(policy)
        if problems:
            raise ValueError("; ".join(problems))
        return policy

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'techconnect.db'}"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"


def reply_secret(settings: Settings) -> str:
    """TECHCONNECT_REPLY_SECRET, or (development) a secret generated once into the data directory."""
    return settings.reply_secret.get_secret_value() if settings.reply_secret else stored_secret(
        settings.data_dir, "reply-secret")
