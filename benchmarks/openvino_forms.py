"""Which of bitprism's ONNX forms OpenVINO's CPU plugin reads, the precision and kernel each
layer really runs with, and how fast, next to ORT on the same files.

For MiniLM-L6 / STS-B: every file is loaded in OpenVINO (true f32, dynamic activation
quantisation off, so results are exact, and in bf16 where the CPU has it) and in onnxruntime,
scored, and timed in the same interleaved passes against ORT's fp32 session (b32 x 128,
2 threads). The last column counts the runtime model's FullyConnected / Gather nodes by
``runtimePrecision`` (u4 = weights kept 4-bit, u8 = integer matmul, f32 = decompressed or float)
and names the FullyConnected kernels. The ORT forms are built by the ort-cpu backend; the static
int7 form (QDQ) by the openvino-cpu backend, which is what it offers.

    .venv/bin/python benchmarks/openvino_forms.py
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/openvino_forms.py --f32-only

The second line caps oneDNN's kernels (OpenVINO's and ORT's own MLAS kernels are not capped):
a stand-in for a CPU without VNNI, checked by the kernel names printed (OpenVINO still reports
bf16 support there but cannot compile bf16 Softmax, hence ``--f32-only``).
"""

from __future__ import annotations

import argparse
import collections

import openvino as ov

from bitprism.compression.apply import compress_model
from bitprism.config import LatencySpec
from bitprism.evaluators.accuracy import score
from bitprism.evaluators.latency import compare_latency, timing_inputs
from bitprism.kernels.base import RuntimeModule, get_backend
from bitprism.kernels.machine import cpu_flags
from bitprism.kernels.onnx_export import export_base
from bitprism.kernels.openvino_cpu import OpenVinoModule, supports_bf16
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import as_tuple, resolve_workload

THREADS = 2
FORMS = {  # name: (backend that lowers it, Linear bits, Embedding bits)
    "fp32": ("ort-cpu", 16, 16),
    "int7 MatMulInteger (ORT form)": ("ort-cpu", 7, 16),
    "int7 static QDQ (openvino-cpu form)": ("openvino-cpu", 7, 16),
    "int4 MatMulNBits": ("ort-cpu", 4, 16),
    "int2 MatMulNBits": ("ort-cpu", 2, 16),
    "4-bit embeddings (GatherBlockQuantized)": ("ort-cpu", 16, 4),
}


def precisions(module: RuntimeModule) -> str:
    """FullyConnected / Gather nodes of an OpenVINO runtime model counted by runtime precision,
    and the FullyConnected kernels (known once the model has run); empty for ORT."""
    if not isinstance(module, OpenVinoModule):
        return ""
    counts: collections.Counter[str] = collections.Counter()
    kernels = set()
    for op in module.compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("FullyConnected", "Gather"):
            counts[f"{kind} {info['runtimePrecision'].astype(str)}"] += 1
        if kind == "FullyConnected":
            kernels.add(info["primitiveType"].astype(str))
    ran = ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))
    return f"{ran}; {'/'.join(sorted(kernels))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--f32-only", action="store_true", help="no bf16 rows")
    args = parser.parse_args()
    workload = resolve_workload("minilm-stsb")
    base = export_base(workload)
    layers = tuple(discover_layers(workload.model))
    backend = get_backend("ort-cpu")
    files = {}
    for name, (lowering, linear, table) in FORMS.items():
        candidate = Candidate.from_dict(
            {
                layer.name: LayerChoice(
                    weight_bits=table if layer.kind is LayerKind.EMBEDDING else linear
                )
                for layer in layers
            }
        )
        builder = get_backend(lowering)
        _, compressed = compress_model(
            workload.model, layers, candidate, builder.input_quant, workload.calibration
        )
        files[name] = builder.build(base, layers, compressed, workload).data
    core = ov.Core()
    settings = {"INFERENCE_NUM_THREADS": THREADS, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    rows: list[tuple[str, RuntimeModule]] = [("ORT fp32", backend.load(base, THREADS))]
    for precision in ("f32", "bf16"):
        for name, data in files.items():
            config = {**settings, "INFERENCE_PRECISION_HINT": precision}
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0
            compiled = core.compile_model(core.read_model(model=data), "CPU", config)
            effective = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            label = f"OpenVINO {precision} (ran {effective.split(chr(39))[1]}): {name}"
            rows.append((label, OpenVinoModule(compiled)))
        if args.f32_only or not supports_bf16():
            break  # without BF16 hardware OpenVINO computes f32 anyway
    rows += [
        (f"ORT: {name}", backend.load(data, THREADS))
        for name, data in files.items()
        if FORMS[name][0] == "ort-cpu"
    ]
    spec = LatencySpec(threads=THREADS, passes=3, repeats=10, warmup=1)
    inputs = timing_inputs(as_tuple(workload.example_inputs), 32)
    timings = compare_latency([module for _, module in rows], inputs, spec)
    print(f"MiniLM-L6 / STS-B, b32 x 128, {THREADS} threads, 3 interleaved passes; {cpu_flags()}")
    print(f"OpenVINO {ov.__version__}\n")
    print(
        "| runtime: form | Spearman | b32 ms | vs ORT fp32 (spread) | layers as run; FC kernels |"
    )
    print("|---|---|---|---|---|")
    for (label, module), timing in zip(rows, timings, strict=True):
        print(
            f"| {label} | {score(workload, module):.2f} | {timing.latency.median_ms:.0f} | "
            f"{timing.speedup:.2f}x ({timing.speedup_min:.2f}-{timing.speedup_max:.2f}) | "
            f"{precisions(module)} |"
        )


if __name__ == "__main__":
    main()
