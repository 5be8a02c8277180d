"""The torch-cuda backend: what it offers, the .pt2 program it builds (bitprism's operators in
place of the compressed Linears), parity with the PyTorch candidate, and how a job picks it
or says plainly that it cannot run. On CPU the backend runs its operators' torch arithmetic;
the tests marked for CUDA run the real kernels where a GPU is."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bitprism.compression.apply import compress_model
from bitprism.compression.structured import find_groups, unit_order
from bitprism.config import Precision, SpecError
from bitprism.evaluators import worker
from bitprism.evaluators.accuracy import parity, score
from bitprism.kernels.base import get_backend
from bitprism.kernels.onnx_graph import find_layer_node
from bitprism.kernels.torch_cuda import NO_GPU, TorchCudaBackend
from bitprism.kernels.torch_sparse24 import is_2_4
from bitprism.results import ExportError, SearchResult
from bitprism.search.driver import run_job
from bitprism.search.prepare import runnable_backend
from bitprism.search.schema import TrialRole, TrialState
from bitprism.search.store import Store
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.spaces.space import build_space
from bitprism.workloads import resolve_workload
from bitprism.workloads.base import Workload
from tests.fixtures import job_spec, token_mlp

CPU = TorchCudaBackend("cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def mixer() -> Workload:
    return resolve_workload("digits-mixer")


def _candidate(workload: Workload) -> Candidate:
    """8, 4 and 2 bits and a low rank on the mixer's Linear layers."""
    linears = [x for x in discover_layers(workload.model) if x.kind is LayerKind.LINEAR]
    forms = [
        LayerChoice(weight_bits=8),
        LayerChoice(weight_bits=4, rank_fraction=0.5),
        LayerChoice(weight_bits=2),
        LayerChoice(weight_bits=8),
        LayerChoice(weight_bits=4),
    ]
    return Candidate.from_dict({x.name: forms[i % 5] for i, x in enumerate(linears)})


@pytest.fixture(scope="module")
def built(mixer: Workload):  # type: ignore[no-untyped-def]
    """The mixer's candidate, its compressed layers and its CPU-built artifact (built once)."""
    return _built(CPU, mixer)


def _built(backend: TorchCudaBackend, workload: Workload):  # type: ignore[no-untyped-def]
    layers = discover_layers(workload.model)
    model, compressed = compress_model(
        workload.model, layers, _candidate(workload), backend.input_quant, workload.calibration
    )
    return model, compressed, backend.build(b"", layers, compressed, workload)


def test_it_offers_the_forms_its_kernels_run(mixer: Workload) -> None:
    offered = {x.kind: CPU.weight_bits(x) for x in discover_layers(mixer.model)}
    assert offered[LayerKind.LINEAR] == (16, 8, 4, 2)  # W8A8, W4A16, W2A16
    assert offered[LayerKind.CONV2D] == (16,)
    assert isinstance(get_backend("torch-cuda"), TorchCudaBackend)


def test_the_program_runs_the_operators_and_matches_the_candidate(mixer: Workload, built) -> None:  # type: ignore[no-untyped-def]
    model, compressed, artifact = built
    assert artifact.suffix == ".pt2"
    program = torch.export.load(io.BytesIO(artifact.data))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    # Six Linears: query, out and head.2 in 8 bits; key a 4-bit low rank (two factors),
    # value in 2 bits, head.0 in 4.
    assert sum("bitprism.nbits_matmul" in t for t in targets) == 4
    assert sum("bitprism.w8a8_linear" in t for t in targets) == 3
    deployed = CPU.load(artifact.data, threads=1)
    assert parity(model, deployed, mixer.calibration).rel_err < 1e-5  # same arithmetic, fp32
    assert score(mixer, deployed) == score(mixer, model)
    assert CPU.build(b"", discover_layers(mixer.model), compressed, mixer).data == artifact.data


def test_its_bytes_are_the_layers_forms_plus_the_rest_in_fp32(mixer: Workload, built) -> None:  # type: ignore[no-untyped-def]
    _, compressed, artifact = built
    layers = {x.name: x for x in discover_layers(mixer.model)}
    forms = sum(CPU.layer_bytes(layers[name], c) for name, c in compressed.items())
    tensors = [*mixer.model.named_parameters(), *mixer.model.named_buffers()]  # BatchNorm's
    rest = sum(
        t.numel() * t.element_size()
        for name, t in tensors
        if name.rpartition(".")[0] not in compressed
    )
    assert artifact.weight_bytes == forms + rest
    fp32 = sum(p.numel() * 4 for p in mixer.model.parameters())
    assert artifact.weight_bytes < 0.6 * fp32


def test_2_4_sparsity_is_offered_built_and_named_for_the_sparse_kernel(mixer: Workload) -> None:
    layers = discover_layers(mixer.model)
    by_name = {x.name: x for x in layers}
    assert CPU.sparse_pattern(by_name["head.0"]) == (2, 4)
    assert CPU.sparse_pattern(by_name["stem.0"]) is None  # a convolution
    space = build_space(layers, CPU)
    assert space.values("head.0", "sparsity") == (0.0, 0.5)  # searched by default
    assert space.values("stem.0", "sparsity") == (0.0,)
    choices = {
        "head.0": LayerChoice(sparsity=0.5),  # one dense factor: 2:4
        "attention.query": LayerChoice(sparsity=0.5, rank_fraction=0.5),  # two factors
        "attention.key": LayerChoice(sparsity=0.5, weight_bits=4),  # zeros in 4-bit codes
    }
    model, compressed = compress_model(
        mixer.model, layers, Candidate.from_dict(choices), CPU.input_quant,
        pattern=CPU.sparse_pattern,
    )  # fmt: skip
    assert all(is_2_4(f.weight) for c in compressed.values() for f in c.factors)
    artifact = CPU.build(b"", layers, compressed, mixer)
    extra = {"bitprism.json": ""}
    torch.export.load(io.BytesIO(artifact.data), extra_files=extra)
    named = json.loads(extra["bitprism.json"])["sparse_2_4"]
    assert named == ["attention.query.0.weight", "attention.query.1.weight", "head.0.weight"]
    deployed = CPU.load(artifact.data, threads=1)
    for name in named:  # the names reach the loaded program's weights
        assert is_2_4(deployed.program.get_parameter(name).detach())
    assert CPU.float_layers(deployed, compressed) == 3  # on the CPU they run dense
    assert parity(model, deployed, mixer.calibration).rel_err < 1e-5


def test_bf16_runs_under_autocast_close_to_the_candidate(mixer: Workload, built) -> None:  # type: ignore[no-untyped-def]
    model, _, artifact = built
    threads = torch.get_num_threads()
    deployed = CPU.load(artifact.data, threads=threads + 1, precision=Precision.BF16)
    assert deployed(mixer.calibration[0]).dtype == torch.float32  # returned as fp32
    assert torch.get_num_threads() == threads  # the process's setting is left alone
    assert parity(model, deployed, mixer.calibration).rel_err < 0.03
    assert score(mixer, deployed) == pytest.approx(score(mixer, model), abs=1.0)


def test_a_layer_alone_is_its_form_including_a_padded_convolution(digits, digits_onnx) -> None:  # type: ignore[no-untyped-def]
    import onnx

    exported = onnx.load_model_from_string(digits_onnx)
    graph = exported.graph
    layers = discover_layers(digits.model)
    conv = next(x for x in layers if x.kind is LayerKind.CONV2D)
    module = digits.model.get_submodule(conv.name)
    assert module.padding != (0, 0)  # the node's pads must reach the timed module
    _, compressed = compress_model(
        digits.model, (conv,), Candidate.from_dict({conv.name: LayerChoice(sparsity=0.25)})
    )
    x = digits.calibration[0][:4]
    node = find_layer_node(graph, conv.name).node
    data = CPU.layer_model(conv, compressed[conv.name], node, tuple(x.shape), exported.opset_import)
    alone = CPU.load(data, threads=1)
    expected = nn.functional.conv2d(
        x,
        compressed[conv.name].factors[0].weight,
        compressed[conv.name].bias,
        module.stride,
        module.padding,
    )
    torch.testing.assert_close(alone(x), expected, rtol=1e-5, atol=1e-5)


def test_a_pruned_candidate_is_built_without_an_onnx_export(
    digits: Workload, digits_onnx: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch program is exported from the pruned model itself: the pruned ONNX export an ONNX
    backend needs (seconds on MiniLM) is not made for it."""

    def no_onnx(_: Workload) -> bytes:
        raise AssertionError("torch-cpu exported a pruned ONNX model it does not read")

    monkeypatch.setattr(worker, "export_base", no_onnx)
    layers = discover_layers(digits.model)
    groups, _ = find_groups(digits.model, digits.example_inputs, layers)
    order = unit_order(digits.model, groups, digits.calibration)
    ctx = worker.EvalContext(
        digits, layers, digits_onnx, "torch-cpu", "", 0.05, 1.0, tuple(groups), order
    )
    candidate = Candidate.from_dict(  # the forms torch-cuda runs: its convolutions stay fp
        {"features.2": LayerChoice(keep=0.75), "head.1": LayerChoice(keep=0.5, weight_bits=4)}
    )
    built = worker.build_candidate(ctx, candidate)
    program = torch.export.load(io.BytesIO(built.artifact.data)).module()
    x = digits.calibration[0][:4]
    torch.testing.assert_close(program(x), built.torch_model(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(AssertionError, match="does not read"):  # an ONNX backend still does
        worker.build_candidate(dataclasses.replace(ctx, backend="ort-cpu"), candidate)
    with pytest.raises(ValueError, match="features.2 is a conv2d"):  # a form it never offers
        worker.build_candidate(ctx, Candidate.from_dict({"features.2": LayerChoice(weight_bits=8)}))


def test_without_a_gpu_the_job_says_so_or_falls_back_as_allowed(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert TorchCudaBackend().missing() == NO_GPU
    with pytest.raises(ValueError, match="cannot run here: no CUDA GPU"):
        TorchCudaBackend().load(b"", threads=1)
    spec = job_spec("sqlite://", tmp_path, backend="torch-cuda", precision="fp16")
    with pytest.raises(
        SpecError, match="torch-cuda cannot run here: no CUDA GPU.*fallback_backend"
    ):
        runnable_backend(spec, None)
    fallen, notes = runnable_backend(spec.model_copy(update={"fallback_backend": "ort-cpu"}), None)
    assert (fallen.backend, fallen.precision) == ("ort-cpu", Precision.FP32)
    assert "searching on ort-cpu instead, in fp32" in notes[0]
    # A cluster is asked for its GPUs, not the driver's machine; a CPU backend needs none.
    assert runnable_backend(spec, 1.0) == (spec, ())
    with pytest.raises(SpecError, match="the Ray cluster has 0 GPUs"):
        runnable_backend(spec, 0.0)
    plain = job_spec("sqlite://", tmp_path)
    assert runnable_backend(plain, 0.0) == (plain, ())


@CUDA
@pytest.mark.parametrize("precision", [Precision.FP16, Precision.BF16])
def test_on_cuda_the_kernels_run_the_candidate(mixer: Workload, precision: Precision) -> None:
    model, _, artifact = _built(TorchCudaBackend(), mixer)
    deployed = TorchCudaBackend().load(artifact.data, threads=1, precision=precision)
    assert parity(model, deployed, mixer.calibration).rel_err < 0.03
    assert score(mixer, deployed) == pytest.approx(score(mixer, model), abs=1.0)
    deployed.bind([mixer.calibration[0]])()


@pytest.mark.usefixtures("ray_local")
def test_a_job_that_falls_back_says_so_in_its_output(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = job_spec(store_url, tmp_path, backend="torch-cuda", fallback_backend="ort-cpu", trials=1)
    run_job(spec.model_copy(update={"warm_start": 0}), progress=False, announce=True)  # as CLI
    lines = capsys.readouterr().out.splitlines()  # each announcement whole, as a log keeps it
    # Trials run on the test's local Ray, which has no GPU (a job without one asks torch).
    note = next(line for line in lines if "torch-cuda cannot run here" in line)
    assert "(the Ray cluster has 0 GPUs" in note
    assert note.endswith("searching on ort-cpu instead, as fallback_backend allows")
    assert any(line.endswith("in ort-cpu, fp32") for line in lines)  # where its latencies come from
    record = Store(store_url).job("job")
    assert record is not None and record.spec["backend"] == "ort-cpu"  # what the job ran


@pytest.mark.usefixtures("ray_local")
def test_a_guided_job_takes_the_gpu_path_on_the_cpu(store_url: str, tmp_path: Path) -> None:
    """torch-cuda's code path as a job takes it (layer forms timed alone for the warm start,
    Ray workers building and scoring .pt2 programs, timing, export), with the backend made
    for the CPU (tests.fixtures registers it as ``torch-cpu``)."""
    spec = job_spec(store_url, tmp_path, backend="torch-cpu", trials=5)
    run_job(spec, progress=False)
    store = Store(store_url)
    trials = store.trials("job")
    searched = [t for t in trials if t.role is TrialRole.SEARCH]
    assert len(searched) == 5
    assert all(t.state is TrialState.COMPLETE and t.verified for t in trials), [
        t.error for t in trials
    ]
    for trial in trials:
        assert trial.artifact is not None and trial.artifact.path.endswith(".pt2")
        assert trial.timed_on is not None and trial.timed_on.endswith("torch on cpu")
    assert {t.candidate["up"].weight_bits for t in searched} >= {8, 4, 2}
    result = SearchResult("job", store_url)
    with pytest.raises(ExportError, match=r"must end in \.pt2"):
        result.export(tmp_path / "best.onnx", trial=searched[0].number)
    report = result.export(tmp_path / "best.pt2", trial=searched[0].number)
    program = torch.export.load(report.path).module()  # stock torch, with the operators imported
    x = token_mlp().example_inputs
    assert program(x).shape == (16, 10)
