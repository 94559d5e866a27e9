"""The portal's signing secret (sessions, CSRF). Passwords and tokens: storage/credentials.py."""

from __future__ import annotations

from config.secret_files import stored_secret
from config.settings import Settings


def portal_secret(settings: Settings) -> str:
    """TECHCONNECT_PORTAL_SECRET, or (development) a secret generated once into the data directory."""
    return settings.portal_secret or stored_secret(settings.data_dir, "portal-secret")
