"""Whole models in the torch-cuda backend's forms, scored and timed on one GPU in one run.

For a workload (MiniLM-L6 / STS-B by default), each uniform form on every Linear layer is
built by the backend as the search builds it (a ``.pt2`` program), loaded in the job's
precision, scored, checked against its PyTorch candidate and timed in the same interleaved
passes as the fp32 program (CUDA events around each run, L2 flushed before it):

- fp16 (or bf16) with no compression: what precision alone gains;
- W8A8 (``torch._int_mm``), W4A16 and W2A16 (the Triton kernel), 2:4 sparse
  (``to_sparse_semi_structured``), low rank at half the rank.

The GPU's name and driver and the torch / CUDA / Triton versions are printed with it. This is
the whole-model counterpart of ``kernels_gpu.py`` (one layer at a time) and what a GPU search
measures per trial.

    .venv/bin/python benchmarks/torch_cuda_forms.py                        # on a CUDA GPU
    .venv/bin/python benchmarks/torch_cuda_forms.py --device cpu --workload digits-mixer

``--device cpu`` builds and runs every form with the operators' torch arithmetic: it proves
the script, not the speed.
"""

from __future__ import annotations

import argparse

from bitprism.compression.apply import compress_model
from bitprism.config import LatencySpec, Precision
from bitprism.evaluators.accuracy import parity, score
from bitprism.evaluators.latency import compare_latency, timing_inputs
from bitprism.kernels.torch_cuda import TorchCudaBackend
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import as_tuple, resolve_workload

FORMS = {
    "W8A8 int8 GEMM": LayerChoice(weight_bits=8),
    "W4A16 Triton": LayerChoice(weight_bits=4),
    "W2A16 Triton": LayerChoice(weight_bits=2),
    "2:4 sparse": LayerChoice(sparsity=0.5),
    "low rank 0.5": LayerChoice(rank_fraction=0.5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", default="minilm-stsb")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", type=Precision, default=Precision.FP16)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    backend = TorchCudaBackend(args.device)
    workload = resolve_workload(args.workload)
    layers = discover_layers(workload.model)
    linears = [x for x in layers if x.kind is LayerKind.LINEAR]
    fp32 = backend.build(b"", layers, {}, workload).data
    files = {"fp32 (the reference)": fp32, f"{args.precision.value}, uncompressed": fp32}
    checks = {}
    for name, form in FORMS.items():
        candidate = Candidate.from_dict({x.name: form for x in linears})
        model, compressed = compress_model(
            workload.model, layers, candidate, backend.input_quant, workload.calibration,
            pattern=backend.sparse_pattern,
        )  # fmt: skip
        files[name] = backend.build(b"", layers, compressed, workload).data
        checks[name] = model
    modules = [
        backend.load(data, 1, Precision.FP32 if i == 0 else args.precision)
        for i, data in enumerate(files.values())
    ]
    inputs = timing_inputs(as_tuple(workload.example_inputs), args.batch)
    timings = compare_latency(modules, inputs, LatencySpec(passes=5, repeats=20, warmup=5))
    print(f"{args.workload}, batch {args.batch}; {backend.machine()}; {backend.version}\n")
    print("| form | score | parity rel err | ms | vs fp32 (spread) | file MB | run dense |")
    print("|---|---|---|---|---|---|---|")
    for (name, data), module, timing in zip(files.items(), modules, timings, strict=True):
        candidate_model = checks.get(name)
        rel = (
            0.0
            if candidate_model is None
            else parity(candidate_model, module, workload.calibration).rel_err
        )
        print(
            f"| {name} | {score(workload, module):.2f} | {rel:.2e} | "
            f"{timing.latency.median_ms:.3f} | {timing.speedup:.2f}x "
            f"({timing.speedup_min:.2f}-{timing.speedup_max:.2f}) | {len(data) / 1e6:.1f} | "
            f"{module.dense_sparse} |"
        )


if __name__ == "__main__":
    main()
