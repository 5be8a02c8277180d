"""Uniform compressed forms of the digits CNN in onnxruntime CPU, timed side by side.

Prints a markdown table: accuracy of the ONNX file, stored weight bytes, and median latency
over interleaved passes (``bitprism.evaluators.verify.compare_files``), relative to fp32.

    .venv/bin/python benchmarks/ort_cpu_forms.py [--batch 32] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from bitprism.config import LatencySpec
from bitprism.evaluators.compress import compress_model
from bitprism.evaluators.export import export_base, lower_candidate
from bitprism.evaluators.verify import compare_files
from bitprism.kernels.base import get_backend
from bitprism.kernels.onnx_graph import initializer_bytes
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import Workload, resolve_workload

FORMS: dict[str, dict[LayerKind, dict[str, float]]] = {
    "fp32": {},
    "int8 all (ConvInteger + MatMulInteger)": {
        LayerKind.CONV2D: {"weight_bits": 8},
        LayerKind.LINEAR: {"weight_bits": 8},
    },
    "int8 linear only (MatMulInteger)": {LayerKind.LINEAR: {"weight_bits": 8}},
    "int4 linear (MatMulNBits)": {LayerKind.LINEAR: {"weight_bits": 4}},
    "int2 linear (MatMulNBits)": {LayerKind.LINEAR: {"weight_bits": 2}},
    "int4 linear, rank 0.5": {LayerKind.LINEAR: {"weight_bits": 4, "rank_fraction": 0.5}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    digits = resolve_workload("digits-cnn")
    images = torch.cat(list(digits.calibration))  # real digits, enough for any --batch <= 256
    workload = Workload(digits.name, digits.model, digits.evaluate, images[: args.batch])
    layers = discover_layers(workload.model)
    base = export_base(workload)
    backend = get_backend("ort-cpu")
    files, sizes = [], []
    for per_kind in FORMS.values():
        choices = {layer.name: per_kind.get(layer.kind, {}) for layer in layers}
        _, compressed = compress_model(workload.model, layers, Candidate.from_dict(choices))
        model = lower_candidate(base, layers, compressed, backend)
        files.append(model.SerializeToString())
        sizes.append(initializer_bytes(model))
    reports = compare_files(files, workload, LatencySpec(threads=args.threads, repeats=100))
    print(
        f"batch {args.batch}, {args.threads} thread(s); median of 5 interleaved passes x 100 runs\n"
    )
    print("| form | accuracy | weight KiB | latency ms | speed-up | size x |")
    print("|---|---|---|---|---|---|")
    for name, report, size in zip(FORMS, reports, sizes, strict=True):
        print(
            f"| {name} | {report.accuracy:.2f} | {size / 1024:.1f} | {report.latency_ms:.3f} | "
            f"{reports[0].latency_ms / report.latency_ms:.2f} | {sizes[0] / size:.2f} |"
        )


if __name__ == "__main__":
    main()
