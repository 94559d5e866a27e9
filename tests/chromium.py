"""Debian's Chromium for the tests that render pages (the portal in a browser, the monthly report's screenshot)."""

from __future__ import annotations

import os
import shutil

import pytest

# Headless in a container: no sandbox, GPU or QUIC, and nothing that phones home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """The `chromium` on PATH; never a download. In CI (`make install` installs Debian's chromium as root) its
    absence fails the run instead of skipping."""
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not on PATH in CI: `make install` installs Debian's chromium as root")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found
