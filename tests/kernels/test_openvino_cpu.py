"""The OpenVINO CPU backend: the weight-only forms it keeps compressed, exact in f32, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bitprism.compression.apply import compress_model
from bitprism.config import Precision, SpecError
from bitprism.evaluators.accuracy import parity, score
from bitprism.kernels.base import get_backend
from bitprism.kernels.machine import cpu_flags
from bitprism.kernels.onnx_export import export_base
from bitprism.kernels.openvino_cpu import OpenVinoModule, runtime_precisions
from bitprism.search.driver import run_job
from bitprism.search.schema import TrialRole
from bitprism.search.store import Store
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import Workload
from tests.fixtures import job_spec

BACKEND = get_backend("openvino-cpu")


def _deployed(workload: Workload, layers, compressed) -> OpenVinoModule:  # type: ignore[no-untyped-def]
    """``compressed`` built into ``workload``'s export and loaded on one thread."""
    module = BACKEND.load(
        BACKEND.build(export_base(workload), layers, compressed, workload).data, 1
    )
    assert isinstance(module, OpenVinoModule)
    return module


def test_offers_only_what_openvino_runs_compressed(digits) -> None:
    kinds = {layer.kind: BACKEND.weight_bits(layer) for layer in discover_layers(digits.model)}
    assert kinds[LayerKind.LINEAR] == (16, 7, 4, 2)
    assert kinds[LayerKind.CONV2D] == (16, 7)  # static int8 only: no low-bit conv kernel


def test_static_int8_runs_as_integer_layers_and_exact(digits, digits_onnx) -> None:
    layers = discover_layers(digits.model)
    every = Candidate.from_dict({layer.name: LayerChoice(weight_bits=7) for layer in layers})
    model, compressed = compress_model(
        digits.model, layers, every, BACKEND.input_quant, digits.calibration
    )
    quants = [f.input_quant for layer in compressed.values() for f in layer.factors]
    assert quants and all(q is not None and q.scale > 0 for q in quants)  # calibrated
    deployed = BACKEND.load(BACKEND.build(digits_onnx, layers, compressed, digits).data, threads=1)
    ran = runtime_precisions(deployed)  # two convs and three linears
    assert len(ran) == 5 and set(ran.values()) == {"u8"}, ran  # integer kernels, not float
    assert BACKEND.float_layers(deployed, compressed) == 0
    # Pixels lie on a 1/16 grid, so some land exactly halfway between two uint8 codes, where
    # OpenVINO's FakeQuantize (x times 1/scale) and QuantizeLinear (x / scale) may round
    # apart; a wrong scale, zero point or a saturating kernel moves the output by far more.
    assert parity(model, deployed, digits.calibration).rel_err < 1e-2
    assert score(digits, deployed) == pytest.approx(score(digits, model), abs=0.3)


def test_static_int8_is_exact_on_continuous_inputs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(384, 512), nn.GELU(), nn.Linear(512, 384)).eval()
    batches = [torch.randn(64, 384) for _ in range(3)]
    workload = Workload("mlp", model, lambda m: 0.0, batches[0], calibration=batches[:2])
    layers = discover_layers(model)
    every = Candidate.from_dict({layer.name: LayerChoice(weight_bits=7) for layer in layers})
    quantized, compressed = compress_model(
        model, layers, every, BACKEND.input_quant, workload.calibration
    )
    deployed = _deployed(workload, layers, compressed)
    check = parity(quantized, deployed, batches, model)  # batches[2] goes beyond the range
    assert check.rel_err < 1e-3 < check.drift  # float rounding, at most a flipped code or two


@pytest.mark.parametrize("bits", [4, 2])
def test_low_bit_linears_run_compressed_and_exact(digits, digits_onnx, bits: int) -> None:
    layers = discover_layers(digits.model)
    heads = {"head.1": LayerChoice(weight_bits=bits), "head.3": LayerChoice(weight_bits=bits)}
    model, compressed = compress_model(digits.model, layers, Candidate.from_dict(heads))
    artifact = BACKEND.build(digits_onnx, layers, compressed, digits)
    deployed = BACKEND.load(artifact.data, threads=1)
    assert isinstance(deployed, OpenVinoModule)
    ran = runtime_precisions(deployed)
    assert sorted(p for name, p in ran.items() if "head" in name).count(f"u{bits}") == 2
    assert parity(model, deployed, digits.calibration).rel_err < 1e-4  # f32, no input quant
    assert score(digits, deployed) == pytest.approx(score(digits, model), abs=0.3)


def test_embedding_tables_are_gathered_compressed(tiny_encoder: Workload) -> None:
    tables = [x for x in discover_layers(tiny_encoder.model) if x.kind is LayerKind.EMBEDDING]
    candidate = Candidate.from_dict({x.name: LayerChoice(weight_bits=4) for x in tables})
    model, compressed = compress_model(tiny_encoder.model, tuple(tables), candidate)
    data = BACKEND.build(export_base(tiny_encoder), tuple(tables), compressed, tiny_encoder).data
    deployed = BACKEND.load(data, threads=1)
    assert "u4" in runtime_precisions(deployed).values()
    assert BACKEND.float_layers(deployed, compressed) == 0
    assert parity(model, deployed, tiny_encoder.calibration).rel_err < 1e-5


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_a_digits_job_runs_on_openvino(store_url: str, tmp_path: Path) -> None:
    spec = job_spec(store_url, tmp_path, workload="digits-cnn", backend="openvino-cpu", job_id="ov")
    run_job(spec, progress=False)
    trials = Store(store_url).trials("ov")
    assert len(trials) == 5 and all(t.verified for t in trials)
    assert all(t.metrics["parity_rel_err"] < 1e-2 for t in trials)  # see the static int8 test
    assert {t.candidate["head.1"].weight_bits for t in trials} >= {16, 7, 4}


def test_backends_load_only_when_asked_for() -> None:
    with pytest.raises(ValueError, match="known: openvino-cpu, ort-cpu"):
        get_backend("tensorrt")
    code = (
        "import sys; from bitprism.kernels.base import get_backend; get_backend('ort-cpu'); "
        "assert 'openvino' not in sys.modules, 'an ORT job imported OpenVINO'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# What OpenVINO needs for bf16 arithmetic; the developers' machines differ on it.
BF16_CPU = any(flag in cpu_flags().split() for flag in ("avx512_bf16", "amx_bf16"))


def test_bf16_is_computed_or_refused_never_silently_f32(digits_onnx) -> None:
    if BF16_CPU:
        deployed = BACKEND.load(digits_onnx, threads=1, precision=Precision.BF16)
        assert deployed.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    else:
        with pytest.raises(ValueError, match="cannot compute in bf16 on this CPU"):
            BACKEND.load(digits_onnx, threads=1, precision=Precision.BF16)
    f32 = BACKEND.load(digits_onnx, threads=1)  # OpenVINO's own default would be bf16
    assert f32.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    with pytest.raises(ValueError, match="ort-cpu computes in fp32 only"):
        get_backend("ort-cpu").load(digits_onnx, threads=1, precision=Precision.BF16)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_a_bf16_job_times_bf16_against_a_true_fp32_reference(store_url: str, tmp_path) -> None:
    fields = {"workload": "digits-cnn", "precision": "bf16", "trials": 3, "job_id": "bf16"}
    if not BF16_CPU:
        with pytest.raises(SpecError, match="precision: OpenVINO cannot compute in bf16"):
            run_job(job_spec(store_url, tmp_path, backend="openvino-cpu", **fields), progress=False)
        assert not (tmp_path / "store.db").exists() and not (tmp_path / "runs").exists()
        return
    with pytest.raises(SpecError, match="precision: ort-cpu computes in fp32, not bf16"):
        run_job(job_spec(store_url, tmp_path, **fields), progress=False)
    run_job(job_spec(store_url, tmp_path, backend="openvino-cpu", **fields), progress=False)
    trials = Store(store_url).trials("bf16")
    reference, uncompressed = trials[0], trials[1]
    assert reference.role is TrialRole.REFERENCE and trials[1].role is TrialRole.SEARCH
    # The same candidate and the same file, but computed in bf16: measured, not reused.
    assert uncompressed.candidate == reference.candidate
    assert reference.metrics["parity_rel_err"] < 1e-5  # the reference computes in f32
    assert 1e-4 < uncompressed.metrics["parity_rel_err"] < 0.05  # bf16 rounding
    assert all(t.verified for t in trials)


def test_layers_the_runtime_decompresses_are_reported() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 192), nn.ReLU(), nn.Linear(192, 8)).eval()
    x = torch.randn(16, 256)
    workload = Workload("mlp", model, lambda m: 0.0, x, calibration=[x])
    layers = discover_layers(model)
    # 4-bit on both: blocks of 128 fit 256 inputs; 192 leaves a partial block, which OpenVINO
    # decompresses to f32 (why the backend does not offer it; a pruned layer can end up so).
    four = Candidate.from_dict({layer.name: LayerChoice(weight_bits=4) for layer in layers})
    _, compressed = compress_model(model, layers, four)
    deployed = _deployed(workload, layers, compressed)
    assert BACKEND.float_layers(deployed, compressed) == 1


def int7_error_and_kernel() -> tuple[float, str]:
    """The static int8 file's error against its PyTorch candidate, and the kernel OpenVINO ran
    its FullyConnected layers with (run in a subprocess with a capped instruction set)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(384, 512), nn.GELU(), nn.Linear(512, 384)).eval()
    x = torch.randn(64, 384) * 3 + 2  # wide uint8 codes: where int16 pair sums would overflow
    workload = Workload("mlp", model, lambda m: 0.0, x, calibration=[x])
    layers = discover_layers(model)
    every = Candidate.from_dict({layer.name: LayerChoice(weight_bits=7) for layer in layers})
    quantized, compressed = compress_model(model, layers, every, BACKEND.input_quant, [x])
    deployed = _deployed(workload, layers, compressed)
    assert isinstance(deployed, OpenVinoModule)
    error = parity(quantized, deployed, [x]).rel_err  # runs it: kernels are chosen on first use
    kernels = {
        op.get_rt_info()["layerType"].astype(str)
        + " "
        + op.get_rt_info()["primitiveType"].astype(str)
        for op in deployed.compiled.get_runtime_model().get_ops()
        if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"
    }
    return error, ",".join(sorted(kernels))


def test_static_int8_is_exact_on_cpus_without_vnni() -> None:
    # oneDNN's kernels capped at AVX2 stand in for a CPU without VNNI or AVX512: there u8 x i8
    # products are summed in pairs in saturating int16 (full 8-bit codes: 8.5% error).
    code = (
        "from tests.kernels.test_openvino_cpu import int7_error_and_kernel as f; "
        "print(*f(), sep='|')"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    error, kernels = done.stdout.strip().splitlines()[-1].split("|")
    assert "avx512" not in kernels and "I8" in kernels.upper(), kernels  # the cap took effect
    assert float(error) < 1e-5
