"""Uniform compressed forms of a CNN in onnxruntime CPU, timed side by side against fp32.

Prints a markdown table: accuracy of the ONNX file, stored weight bytes, and the speed-up over
fp32 timed in the same interleaved passes (``bitprism.evaluators.verify.compare_files``),
with the spread between passes. BatchNorm is folded first, as bitprism does for every job.

    .venv/bin/python benchmarks/ort_cpu_forms.py [--batch 32] [--threads 1] [--workload REF]

``--workload tests.fixtures:bn_cnn`` (run from the repo root) times a Conv+BatchNorm CNN.
"""

from __future__ import annotations

import argparse

import torch

from bitprism.compression.apply import compress_model
from bitprism.compression.fold import fold_batchnorm
from bitprism.config import LatencySpec
from bitprism.evaluators.verify import compare_files
from bitprism.kernels.base import get_backend
from bitprism.kernels.machine import cpu_flags
from bitprism.kernels.onnx_export import export_base
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import Workload, resolve_workload

FORMS: dict[str, dict[LayerKind, dict[str, float]]] = {
    "fp32": {},
    "int8 conv (u8u8 ConvInteger) + int7 linear (u8s8 MatMulInteger)": {
        LayerKind.CONV2D: {"weight_bits": 8},
        LayerKind.LINEAR: {"weight_bits": 7},
    },
    "int7 linear only (u8s8 MatMulInteger)": {LayerKind.LINEAR: {"weight_bits": 7}},
    "int4 linear (MatMulNBits)": {LayerKind.LINEAR: {"weight_bits": 4}},
    "int2 linear (MatMulNBits)": {LayerKind.LINEAR: {"weight_bits": 2}},
    "int4 linear, rank 0.5": {LayerKind.LINEAR: {"weight_bits": 4, "rank_fraction": 0.5}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workload", default="digits-cnn")
    args = parser.parse_args()
    given = resolve_workload(args.workload)
    images = torch.cat(list(given.calibration))
    images = torch.cat([images] * (args.batch // len(images) + 1))[: args.batch]
    folded, notes = fold_batchnorm(given.model)
    workload = Workload(given.name, folded, given.evaluate, images)
    layers = discover_layers(workload.model)
    base = export_base(workload)
    backend = get_backend("ort-cpu")
    files, sizes = [], []
    for per_kind in FORMS.values():
        choices = {layer.name: per_kind.get(layer.kind, {}) for layer in layers}
        _, compressed = compress_model(workload.model, layers, Candidate.from_dict(choices))
        artifact = backend.build(base, layers, compressed, workload)
        files.append(artifact.data)
        sizes.append(artifact.weight_bytes)
    spec = LatencySpec(threads=args.threads, repeats=100, passes=5)
    reports = compare_files(files, workload, spec, backend.name)
    print(
        f"{given.name}, batch {args.batch}, {args.threads} thread(s); 5 interleaved passes x "
        f"100 runs; {'; '.join(notes) or 'no BatchNorm'}; CPU flags: {cpu_flags()}\n"
    )
    print("| form | accuracy | weight KiB | latency ms | speed-up (spread) | size x |")
    print("|---|---|---|---|---|---|")
    for name, report, size in zip(FORMS, reports, sizes, strict=True):
        t = report.timing
        print(
            f"| {name} | {report.accuracy:.2f} | {size / 1024:.1f} | {t.latency.median_ms:.3f} | "
            f"{t.speedup:.2f} ({t.speedup_min:.2f}-{t.speedup_max:.2f}) | {sizes[0] / size:.2f} |"
        )


if __name__ == "__main__":
    main()
