"""The OpenVINO CPU backend: the weight-only forms it keeps compressed, exact in f32, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bitprism.compression.apply import compress_model
from bitprism.config import build_spec
from bitprism.evaluators.accuracy import parity, score
from bitprism.kernels.base import get_backend
from bitprism.kernels.openvino_cpu import OpenVinoModule, runtime_precisions
from bitprism.search.driver import run_job
from bitprism.search.store import Store
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import Workload

BACKEND = get_backend("openvino-cpu")


def test_offers_only_what_openvino_keeps_compressed(digits) -> None:
    kinds = {layer.kind: BACKEND.weight_bits(layer) for layer in discover_layers(digits.model)}
    assert kinds[LayerKind.LINEAR] == (16, 4, 2)  # not ORT's int7: OpenVINO runs it as float
    assert kinds[LayerKind.CONV2D] == (16,)


@pytest.mark.parametrize("bits", [4, 2])
def test_low_bit_linears_run_compressed_and_exact(digits, digits_onnx, bits: int) -> None:
    layers = discover_layers(digits.model)
    heads = {"head.1": LayerChoice(weight_bits=bits), "head.3": LayerChoice(weight_bits=bits)}
    model, compressed = compress_model(digits.model, layers, Candidate.from_dict(heads))
    artifact = BACKEND.build(digits_onnx, layers, compressed)
    deployed = BACKEND.load(artifact.data, threads=1)
    assert isinstance(deployed, OpenVinoModule)
    ran = runtime_precisions(deployed)
    assert sorted(p for name, p in ran.items() if "head" in name).count(f"u{bits}") == 2
    assert parity(model, deployed, digits.calibration).rel_err < 1e-4  # f32, no input quant
    assert score(digits, deployed) == pytest.approx(score(digits, model), abs=0.3)


def test_embedding_tables_are_gathered_compressed(tiny_encoder: Workload) -> None:
    from bitprism.kernels.onnx_export import export_base

    tables = [x for x in discover_layers(tiny_encoder.model) if x.kind is LayerKind.EMBEDDING]
    candidate = Candidate.from_dict({x.name: LayerChoice(weight_bits=4) for x in tables})
    model, compressed = compress_model(tiny_encoder.model, tuple(tables), candidate)
    data = BACKEND.build(export_base(tiny_encoder), tuple(tables), compressed).data
    deployed = BACKEND.load(data, threads=1)
    assert "u4" in runtime_precisions(deployed).values()
    assert parity(model, deployed, tiny_encoder.calibration).rel_err < 1e-5


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_a_digits_job_runs_on_openvino(store_url: str, tmp_path: Path) -> None:
    spec = build_spec(
        {
            "workload": "digits-cnn",
            "backend": "openvino-cpu",
            "trials": 4,
            "workers": 2,
            "store": store_url,
            "output_dir": str(tmp_path / "runs"),
            "job_id": "ov",
            "latency": {"repeats": 5, "passes": 3},
        }
    )
    run_job(spec, progress=False)
    trials = Store(store_url).trials("ov")
    assert len(trials) == 5 and all(t.verified for t in trials)
    assert all(t.metrics["parity_rel_err"] < 1e-4 for t in trials)
    assert {t.candidate["head.1"].weight_bits for t in trials} >= {16, 4}


def test_backends_load_only_when_asked_for() -> None:
    with pytest.raises(ValueError, match="known: openvino-cpu, ort-cpu"):
        get_backend("tensorrt")
    code = (
        "import sys; from bitprism.kernels.base import get_backend; get_backend('ort-cpu'); "
        "assert 'openvino' not in sys.modules, 'an ORT job imported OpenVINO'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
