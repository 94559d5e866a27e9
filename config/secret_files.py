"""Secrets generated once into the data directory for development (the portal's signing secret,
the reply tokens' secret); production sets them in the environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def stored_secret(data_dir: Path, name: str) -> str:
    """The secret in `data_dir/name`, written on first use; two processes starting together agree."""
    path = data_dir / name
    try:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # O_EXCL: the first writer wins
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        value = secrets.token_urlsafe(48)
        fh.write(value)
    return value
