"""Shared fixtures: the real digits workload (trained once per session) and its ONNX export."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Train built-in models into a per-session cache, not the user's."""
    old = os.environ.get("BITPRISM_CACHE")
    os.environ["BITPRISM_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("BITPRISM_CACHE", None)
    else:
        os.environ["BITPRISM_CACHE"] = old


@pytest.fixture(scope="session")
def digits(_cache: None):  # type: ignore[no-untyped-def]
    from bitprism.workloads import resolve_workload

    return resolve_workload("digits-cnn")


@pytest.fixture(scope="session")
def digits_onnx(digits) -> bytes:  # type: ignore[no-untyped-def]
    from bitprism.evaluators.export import export_base

    return export_base(digits)


@pytest.fixture(scope="session")
def token_mlp():  # type: ignore[no-untyped-def]
    from tests.fixtures import token_mlp

    return token_mlp()


@pytest.fixture()
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray for the session; bitprism reuses an initialised Ray instead of starting one."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 1024**2,
        logging_level="ERROR",
    )
    yield
    ray.shutdown()
