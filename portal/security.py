"""The portal's signing secret (sessions, CSRF). Passwords and tokens: storage/credentials.py."""

from __future__ import annotations

import os
from pathlib import Path

from config.settings import Settings
from storage.credentials import random_token


def portal_secret(settings: Settings) -> str:
    """TECHCONNECT_PORTAL_SECRET, or (development) a secret generated once into the data directory."""
    if settings.portal_secret:
        return settings.portal_secret
    path: Path = settings.data_dir / "portal-secret"
    try:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    except FileNotFoundError:
        pass
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = random_token(48)
    # O_EXCL: two processes starting together agree on the first one written.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret)
    return secret
