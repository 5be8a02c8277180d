"""Which of bitprism's ONNX forms OpenVINO's CPU plugin reads, the precision each layer really
runs in, and how fast, next to ORT on the same files: groundwork for the openvino-cpu backend.

For MiniLM-L6 / STS-B: every file is loaded in OpenVINO (true f32, dynamic activation
quantisation off, so results are exact, and in bf16 where the CPU has it) and in onnxruntime,
scored, and timed in the same interleaved passes against ORT's fp32 session (b32 x 128,
2 threads). The precision column counts the runtime model's FullyConnected / Gather nodes by
``runtimePrecision`` (u4 = weights kept 4-bit, f32 = decompressed or float).

    .venv/bin/python benchmarks/openvino_forms.py
"""

from __future__ import annotations

import collections

import openvino as ov

from bitprism.compression.apply import compress_model
from bitprism.config import LatencySpec
from bitprism.evaluators.accuracy import score
from bitprism.evaluators.latency import compare_latency, cpu_flags, timing_inputs
from bitprism.kernels.base import RuntimeModule, get_backend
from bitprism.kernels.onnx_export import export_base
from bitprism.kernels.openvino_cpu import OpenVinoModule
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import as_tuple, resolve_workload

THREADS = 2
FORMS = {  # name: (Linear bits, Embedding bits), as the ORT backend lowers them
    "fp32": (16, 16),
    "int7 MatMulInteger (ORT form)": (7, 16),
    "int4 MatMulNBits": (4, 16),
    "int2 MatMulNBits": (2, 16),
    "4-bit embeddings (GatherBlockQuantized)": (16, 4),
}


def precisions(compiled: ov.CompiledModel) -> str:
    """FullyConnected / Gather nodes of the runtime model counted by runtime precision."""
    counts: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("FullyConnected", "Gather"):
            counts[f"{kind} {info['runtimePrecision'].astype(str)}"] += 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))


def main() -> None:
    workload = resolve_workload("minilm-stsb")
    base = export_base(workload)
    layers = tuple(discover_layers(workload.model))
    backend = get_backend("ort-cpu")
    files = {}
    for name, (linear, table) in FORMS.items():
        candidate = Candidate.from_dict(
            {
                layer.name: LayerChoice(
                    weight_bits=table if layer.kind is LayerKind.EMBEDDING else linear
                )
                for layer in layers
            }
        )
        _, compressed = compress_model(workload.model, layers, candidate, backend.input_quant)
        files[name] = backend.build(base, layers, compressed).data
    core = ov.Core()
    settings = {"INFERENCE_NUM_THREADS": THREADS, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    rows: list[tuple[str, RuntimeModule, str]] = [("ORT fp32", backend.load(base, THREADS), "")]
    for precision in ("f32", "bf16"):
        for name, data in files.items():
            config = {**settings, "INFERENCE_PRECISION_HINT": precision}
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0
            compiled = core.compile_model(core.read_model(model=data), "CPU", config)
            effective = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            label = f"OpenVINO {precision} (ran {effective.split(chr(39))[1]}): {name}"
            rows.append((label, OpenVinoModule(compiled), precisions(compiled)))
        if "avx512_bf16" not in cpu_flags() and "amx" not in cpu_flags():
            break  # without BF16 hardware OpenVINO computes f32 anyway
    rows += [(f"ORT: {name}", backend.load(data, THREADS), "") for name, data in files.items()]
    spec = LatencySpec(threads=THREADS, passes=3, repeats=10, warmup=1)
    inputs = timing_inputs(as_tuple(workload.example_inputs), 32)
    timings = compare_latency([module for _, module, _ in rows], inputs, spec)
    print(f"MiniLM-L6 / STS-B, b32 x 128, {THREADS} threads, 3 interleaved passes; {cpu_flags()}")
    print(f"OpenVINO {ov.__version__}\n")
    print("| runtime: form | Spearman | b32 ms | vs ORT fp32 (spread) | layers as run |")
    print("|---|---|---|---|---|")
    for (label, module, ran), timing in zip(rows, timings, strict=True):
        print(
            f"| {label} | {score(workload, module):.2f} | {timing.latency.median_ms:.0f} | "
            f"{timing.speedup:.2f}x ({timing.speedup_min:.2f}-{timing.speedup_max:.2f}) | "
            f"{ran} |"
        )


if __name__ == "__main__":
    main()
