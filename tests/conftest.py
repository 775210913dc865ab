"""Shared fixtures: settings in a temporary run folder, the embedded services, one Spark session.

Servers are real (Tansu broker, moto server, uvicorn) and started once per session on free
loopback ports by the same code as ``fraudkit up``; each is stopped at teardown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fraudkit.config import Settings, load_settings, with_service_endpoints
from fraudkit.services import SERVICE_NAMES, down, free_port, up

ROOT = Path(__file__).resolve().parents[1]


def make_settings(run_dir: Path, **overrides) -> Settings:
    """Settings from the project's config.yaml with a private run folder and free ports."""
    base = {
        "run_dir": str(run_dir),
        "services": {
            "kafka_port": free_port(),
            "moto_port": free_port(),
            "llm_port": free_port(),
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDKIT_")}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "FRAUDKIT_LLM_URL"):
        env.pop(name, None)
    return load_settings(ROOT / "config.yaml", env=env, overrides=base, use_state=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose every path is under a fresh temporary folder; no services."""
    return make_settings(tmp_path / "runs")


@pytest.fixture(scope="session")
def services_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services") / "runs"


@contextmanager
def running(run_dir: Path, *names: str) -> Iterator[Settings]:
    """Embedded services started by ``fraudkit.services.up`` in ``run_dir``, stopped after.

    Yields settings whose endpoints point at them.
    """
    base = make_settings(run_dir)
    up(base, names=names or SERVICE_NAMES, say=lambda _: None)
    try:
        yield with_service_endpoints(base)
    finally:
        down(base, say=lambda _: None)


@pytest.fixture(scope="session")
def live_services(services_run_dir: Path) -> Iterator[Settings]:
    """All three embedded services, started once for the test session."""
    with running(services_run_dir) as live:
        yield live


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the test run: local[2], UTC, UI off, loopback."""
    from fraudkit.spark import build_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = build_spark(app_name="fraudkit-tests", shuffle_partitions=2)
    yield session
    session.stop()
