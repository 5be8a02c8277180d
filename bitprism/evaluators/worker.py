"""The two kinds of trial work: evaluate a candidate, and time finished candidates.

:func:`evaluate_candidate` (compress, build the backend's artifact, score, check parity) runs
many at once; :func:`time_files` times artifacts against the fp32 one and must run alone on the
machine
(the driver runs it in the pool's exclusive timing slot). Both are pure with respect to the
store: they return results and write only content-addressed files, so a killed worker
loses nothing the driver recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import ray
import torch
from torch import nn

from bitprism.compression.apply import PLAIN, CompressedLayer, compress_model
from bitprism.compression.structured import PruneGroup, prune_model
from bitprism.config import LatencySpec, Methods, Precision
from bitprism.evaluators.accuracy import parity, score
from bitprism.evaluators.latency import Comparison, compare_latency
from bitprism.kernels.base import Artifact, RuntimeModule, get_backend
from bitprism.kernels.onnx_export import export_base
from bitprism.sensitivity.stats import candidate_stats
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import LayerInfo
from bitprism.workloads.base import Workload


@dataclass(frozen=True)
class EvalContext:
    """What every trial of a job shares; shipped to each worker once.

    ``groups`` and ``unit_order`` are the structured-pruning groups and their units ranked by
    importance (computed once per job on the calibration data); ``precision`` is what the
    candidates compute in (the fp32 reference always computes in fp32); ``methods`` how each
    layer is factorised, pruned and quantised; ``stats_key`` lets a worker reuse the
    calibration statistics it measured for an earlier candidate of the same source model.
    """

    workload: Workload
    layers: tuple[LayerInfo, ...]
    base_onnx: bytes
    backend: str
    artifact_dir: str
    parity_tolerance: float
    parity_drift_share: float
    groups: tuple[PruneGroup, ...] = ()
    unit_order: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    precision: Precision = Precision.FP32
    methods: Methods = PLAIN
    stats_key: str | None = None  # names the model and calibration data: workers memoise stats


@dataclass(frozen=True)
class TrialOutcome:
    """Measured metrics, whether the ONNX file was verified, and where it is."""

    metrics: dict[str, float]
    verified: bool
    onnx_path: str
    onnx_sha256: str
    onnx_bytes: int
    note: str | None = None
    evaluated_on: str = ""  # the host (and Ray node) that built and scored it


@dataclass(frozen=True)
class BuiltCandidate:
    """A candidate as deployed (its artifact) and the PyTorch models it is checked against.

    ``torch_model`` computes what the file should; ``source`` is the fp32 model it was
    compressed from (the pruned one when units were removed).
    """

    artifact: Artifact
    torch_model: nn.Module
    source: nn.Module
    compressed: Mapping[str, CompressedLayer]


def build_candidate(ctx: EvalContext, candidate: Candidate) -> BuiltCandidate:
    """Prune, compress and lower ``candidate``: deterministic, so a dropped file can be rebuilt
    byte for byte from the stored candidate."""
    backend = get_backend(ctx.backend)
    source, base = ctx.workload.model, ctx.base_onnx
    kept = [f"{g.leader}={candidate[g.leader].keep}" for g in ctx.groups]
    key = None if ctx.stats_key is None else ":".join([ctx.stats_key, *kept])
    if any(candidate[group.leader].keep < 1.0 for group in ctx.groups):
        # Smaller layers change shapes all along the graph: export the pruned fp32 model.
        source = prune_model(
            source, ctx.groups, ctx.unit_order, candidate, ctx.workload.example_inputs
        )
    fp32 = dataclasses.replace(ctx.workload, model=source)
    if source is not ctx.workload.model and backend.lowers_onnx:
        base = export_base(fp32)
    calibration = ctx.workload.calibration
    with _one_thread():  # calibrated scales must not depend on who builds (worker or export)
        stats = candidate_stats(source, ctx.layers, candidate, ctx.methods, calibration, key)
        torch_model, compressed = compress_model(
            source,
            ctx.layers,
            candidate,
            backend.input_quant,
            calibration,
            ctx.methods,
            stats,
            backend.sparse_pattern,
        )
    artifact = backend.build(base, ctx.layers, compressed, fp32)
    return BuiltCandidate(artifact, torch_model, source, compressed)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread, as the workers do: a float reduction split across threads may
    round differently, and a static input scale that moved by one ulp would change the file."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def evaluate_candidate(
    ctx: EvalContext, candidate: Candidate, reference: bool = False
) -> TrialOutcome:
    """Build ``candidate`` exactly as it would be deployed, score it and check parity.

    The fp32 ``reference`` is loaded in fp32 whatever the job's precision. Runs on one core
    (one of several evaluations at once); latency is taken later by :func:`time_files`, with
    nothing else running.
    """
    torch.set_num_threads(1)
    built = build_candidate(ctx, candidate)
    data = built.artifact.data
    path, sha256 = write_artifact(Path(ctx.artifact_dir), data, built.artifact.suffix)
    precision = Precision.FP32 if reference else ctx.precision
    runtime = get_backend(ctx.backend)
    deployed = runtime.load(data, threads=1, precision=precision)
    accuracy = score(ctx.workload, deployed)
    # Drift is measured from the (pruned) fp32 source: how far quantisation moved the output.
    check = parity(built.torch_model, deployed, ctx.workload.calibration, built.source)
    verified = check.verified(ctx.parity_tolerance, ctx.parity_drift_share)
    metrics = {
        "accuracy": accuracy,
        "weight_bytes": float(built.artifact.weight_bytes),
        "file_bytes": float(len(data)),
        # compressed in the file, run without their kernel (decompressed, dense): not faster
        "float_layers": float(runtime.float_layers(deployed, built.compressed)),
        **check.metrics(),
    }
    note = (
        None
        if verified
        else (
            f"not verified: the file's output differs from PyTorch by {check.rel_err:.1%} "
            f"(relative RMS), beyond the tolerance {ctx.parity_tolerance:.1%} and beyond what "
            f"compression itself moved it ({check.drift:.1%})"
        )
    )
    return TrialOutcome(metrics, verified, str(path), sha256, len(data), note, placement())


def time_files(
    backend: str,
    latency: LatencySpec,
    inputs: tuple[torch.Tensor, ...],
    paths: list[str],
    precision: Precision = Precision.FP32,
) -> list[Comparison]:
    """Time ``backend``'s files at ``paths`` against ``paths[0]`` (the fp32 file, computed in
    fp32; the others in ``precision``), interleaved."""
    modules = load_against_fp32(
        backend, [Path(p).read_bytes() for p in paths], latency.threads, precision
    )
    where = f"{placement()}; {get_backend(backend).machine()}"
    return [
        dataclasses.replace(c, timed_on=where) for c in compare_latency(modules, inputs, latency)
    ]


def placement() -> str:
    """This process's host, and its Ray node when it runs in Ray: where a trial was measured
    (a cluster's nodes may differ in CPU; a speed-up is always against fp32 on one node)."""
    host = socket.gethostname()
    if not ray.is_initialized():
        return host
    return f"{host} (Ray node {ray.get_runtime_context().get_node_id()[:12]})"


def load_against_fp32(
    backend: str, files: Sequence[bytes], threads: int, precision: Precision
) -> list[RuntimeModule]:
    """``files[0]`` (the fp32 reference) loaded to compute in fp32, the rest in ``precision``."""
    runtime = get_backend(backend)
    return [
        runtime.load(data, threads, Precision.FP32 if i == 0 else precision)
        for i, data in enumerate(files)
    ]


def write_artifact(folder: Path, data: bytes, suffix: str = ".onnx") -> tuple[Path, str]:
    """Store ``data`` as ``<sha256><suffix>`` in ``folder`` (atomically; equal files shared)."""
    sha256 = hashlib.sha256(data).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha256}{suffix}"
    if not path.exists():
        tmp = folder / f".{sha256}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)
    return path.resolve(), sha256
