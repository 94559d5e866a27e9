"""docker-compose.yml is checked by parsing it: this machine has no Docker engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from domain.naming import SEARCH_ATTRIBUTES
from starter.settings import Settings, TemporalSettings

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_every_service_has_an_image_or_build() -> None:
    for name, svc in compose()["services"].items():
        assert "image" in svc or "build" in svc, name


def test_dependencies_that_wait_for_health_have_health_checks() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no check"


def test_app_environment_matches_settings() -> None:
    known = {f"TECHCONNECT_{k.upper()}" for k in Settings.model_fields} | {
        f"TEMPORAL_{k.upper()}" for k in TemporalSettings.model_fields}
    for name in ("worker", "migrate"):
        env = compose()["services"][name]["environment"]
        assert set(env) <= known, f"{name}: unknown variables {set(env) - known}"
        assert "TECHCONNECT_DATABASE_URL" in env and "TEMPORAL_ADDRESS" in env


def test_registered_search_attributes_match_code() -> None:
    cmd = " ".join(compose()["services"]["temporal-setup"]["command"])
    found = dict(re.findall(r"--name (\w+) --type (\w+)", cmd))
    assert found == SEARCH_ATTRIBUTES


def test_published_ports_do_not_clash() -> None:
    ports: list[str] = []
    for svc in compose()["services"].values():
        ports += [str(p).split(":")[0] for p in svc.get("ports", [])]
    assert len(ports) == len(set(ports)), ports
    assert "ports" not in compose()["services"]["worker"], "workers scale out: no published port"
