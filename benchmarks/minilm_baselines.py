"""MiniLM on STS-B: what users pick today in one line, next to bitprism's fronts, side by side.

Every variant is scored with the workload's metric (Spearman x 100 on the scored STS-B pairs)
in its runtime (ONNX Runtime, or OpenVINO's CPU plugin in the precision named) and timed
against ORT fp32 in the same interleaved passes, at batch 32 x 128 tokens and batch 1 x 128,
2 threads. Prints a markdown table (with the CPU's flags) and, with the bench extra installed
(``pip install -e '.[bench]'``: nncf), writes a plot.

    .venv/bin/python benchmarks/minilm_baselines.py [--data PATH] [--store sqlite:///bitprism.db] \\
        [--job ORT_JOB] [--ov-job OPENVINO_JOB] [--plot docs/minilm_front.png]

The stock baselines start from a plain ``torch.onnx.export`` (its optimiser folds the weight
transposes, which ORT's quantisers need); bitprism's own files start from its fp32 export.
OpenVINO's rows: its defaults (bf16 compute where the CPU has it), and NNCF 3.4's
``nncf.quantize`` with ``ModelType.TRANSFORMER`` on the workload's calibration batches.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import openvino as ov
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

from bitprism.compression.structured import find_groups, unit_order
from bitprism.config import LatencySpec, Precision
from bitprism.evaluators.accuracy import score
from bitprism.evaluators.latency import compare_latency, timing_inputs
from bitprism.evaluators.worker import EvalContext, build_candidate
from bitprism.kernels.base import RuntimeModule, get_backend
from bitprism.kernels.machine import cpu_flags
from bitprism.kernels.onnx_export import export_base
from bitprism.kernels.onnx_graph import initializer_bytes, strip_metadata
from bitprism.kernels.openvino_cpu import OpenVinoModule, supports_bf16
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import Workload, as_tuple, resolve_workload

THREADS = 2


def plain_export(workload: Workload) -> bytes:
    """``torch.onnx.export`` as a user would call it (optimiser on), dims dynamic."""
    dims = tuple({d: torch.export.Dim.AUTO for d in axes} for axes in workload.axes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            workload.model,
            tuple(workload.example_inputs),
            dynamo=True,
            dynamic_shapes=dims,
            external_data=False,
            verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    strip_metadata(proto)
    return proto.SerializeToString()


def stock_int8(plain: bytes, folder: Path) -> bytes:
    """ORT ``quantize_dynamic`` with its defaults (int8 weights, dynamic activations)."""
    (folder / "plain.onnx").write_bytes(plain)
    quantize_dynamic(folder / "plain.onnx", folder / "int8.onnx", weight_type=QuantType.QInt8)
    return (folder / "int8.onnx").read_bytes()


def stock_int4(plain: bytes) -> bytes:
    """ORT ``MatMulNBitsQuantizer``: 4-bit blocks of 128, symmetric, accuracy_level 4."""
    quantizer = MatMulNBitsQuantizer(
        onnx.load_model_from_string(plain),
        bits=4,
        block_size=128,
        is_symmetric=True,
        accuracy_level=4,
    )
    quantizer.process()
    buffer = io.BytesIO()
    onnx.save_model(quantizer.model.model, buffer)
    return buffer.getvalue()


def ours(
    workload: Workload,
    base: bytes,
    choose: dict[LayerKind, LayerChoice],
    ffn_keep: float,
    backend: str = "ort-cpu",
) -> bytes:
    """A hand-made bitprism candidate for ``backend``: one choice per layer kind, FFN pruned."""
    layers = discover_layers(workload.model)
    groups, _ = find_groups(workload.model, workload.example_inputs, layers)
    groups = [g for g in groups if len(g.producers) == 1]  # FFN neurons, not heads
    order = unit_order(workload.model, groups, workload.calibration)
    leaders = {g.leader for g in groups}
    choices = {}
    for layer in layers:
        choice = choose.get(layer.kind, LayerChoice())
        keep = ffn_keep if layer.name in leaders else 1.0
        choices[layer.name] = LayerChoice(weight_bits=choice.weight_bits, keep=keep)
    ctx = EvalContext(workload, layers, base, backend, "", 0.05, 1.0, tuple(groups), order)
    return build_candidate(ctx, Candidate.from_dict(choices)).artifact.data


@dataclass(frozen=True)
class Variant:
    """One row: a name, its weight bytes, and how to load it in its runtime."""

    name: str
    weight_bytes: int
    load: Callable[[], RuntimeModule]


def onnx_variant(name: str, data: bytes, backend: str, precision: Precision) -> Variant:
    """An ONNX file loaded by a bitprism backend (the runtime settings a job times with)."""
    runtime = get_backend(backend)
    size = initializer_bytes(onnx.load_model_from_string(data))
    return Variant(name, size, lambda: runtime.load(data, THREADS, precision))


def openvino_default(name: str, model: ov.Model, size: int) -> Variant:
    """An OpenVINO model compiled as a user would: default precision (bf16 where the CPU has
    it), ``THREADS`` threads, one stream, latency hint."""
    settings = {"INFERENCE_NUM_THREADS": THREADS, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    return Variant(
        name, size, lambda: OpenVinoModule(ov.Core().compile_model(model, "CPU", settings))
    )


def constant_bytes(model: ov.Model) -> int:
    """Bytes held by an OpenVINO model's constants (its weights, as stored)."""
    return sum(op.get_byte_size() for op in model.get_ops() if op.get_type_name() == "Constant")


def nncf_int8(plain: bytes, workload: Workload) -> ov.Model:
    """OpenVINO + NNCF static int8 as its docs show it: ``nncf.quantize`` on the calibration
    batches with the transformer model type (mixed preset, its defaults otherwise)."""
    import nncf

    model = ov.Core().read_model(model=plain)
    names = [port.get_any_name() for port in model.inputs]

    def feed(batch: object) -> dict[str, object]:
        return {n: t.numpy() for n, t in zip(names, as_tuple(batch), strict=True)}  # type: ignore[arg-type]

    dataset = nncf.Dataset(list(workload.calibration), feed)
    return nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER)


def front_variants(job: str, store: str, workload: Workload) -> list[Variant]:
    """Each compressed point of a job's front, loaded as that job timed it."""
    from bitprism.results import SearchResult

    result = SearchResult(job, store, workload=workload)
    spec = result.spec
    return [
        onnx_variant(
            f"bitprism {job} ({spec.runtime_label()}) {p.label}",
            result.onnx_file(p),
            spec.backend,
            spec.precision,
        )
        for p in result.pareto
        if not p.is_reference
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--job", default=None, help="an ort-cpu job whose front to add")
    parser.add_argument("--ov-job", default=None, help="an openvino-cpu job whose front to add")
    parser.add_argument("--store", default="sqlite:///bitprism.db")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    workload = resolve_workload("minilm-stsb", data=args.data)
    base = export_base(workload)
    plain = plain_export(workload)
    fp32 = Precision.FP32
    # OpenVINO's rows in each precision this CPU computes in (bf16 needs AVX512-BF16 or AMX)
    precisions = [fp32, Precision.BF16] if supports_bf16() else [fp32]
    int7 = LayerChoice(weight_bits=7)
    int7_emb4 = {LayerKind.LINEAR: int7, LayerKind.EMBEDDING: LayerChoice(weight_bits=4)}
    with tempfile.TemporaryDirectory() as tmp:
        variants = [
            onnx_variant("fp32 (bitprism's export)", base, "ort-cpu", fp32),
            onnx_variant("fp32 (plain torch.onnx.export)", plain, "ort-cpu", fp32),
            onnx_variant(
                "ORT quantize_dynamic int8", stock_int8(plain, Path(tmp)), "ort-cpu", fp32
            ),
        ]
    variants += [
        onnx_variant("ORT MatMulNBits int4 (block 128)", stock_int4(plain), "ort-cpu", fp32),
        onnx_variant(
            "ORT int7 linears (u8s8) + 4-bit embeddings",
            ours(workload, base, int7_emb4, 1.0),
            "ort-cpu",
            fp32,
        ),
        onnx_variant("ORT FFN keep 0.75 (fp32)", ours(workload, base, {}, 0.75), "ort-cpu", fp32),
        openvino_default(
            "OpenVINO defaults", ov.Core().read_model(model=plain), variants[1].weight_bytes
        ),
    ]
    quantized = nncf_int8(plain, workload)
    variants.append(
        openvino_default("OpenVINO + NNCF int8 (transformer)", quantized, constant_bytes(quantized))
    )
    ov_int7 = ours(workload, base, int7_emb4, 1.0, "openvino-cpu")
    ov_pruned = ours(workload, base, int7_emb4, 0.75, "openvino-cpu")
    for precision in precisions:
        variants += [
            onnx_variant(f"OV fp32 ({precision.value})", base, "openvino-cpu", precision),
            onnx_variant(
                f"OV static int7 + 4-bit emb ({precision.value})",
                ov_int7,
                "openvino-cpu",
                precision,
            ),
            onnx_variant(
                f"OV static int7 + 4-bit emb, FFN keep 0.75 ({precision.value})",
                ov_pruned,
                "openvino-cpu",
                precision,
            ),
        ]
    if args.job:
        variants += front_variants(args.job, args.store, workload)
    if args.ov_job:
        variants += front_variants(args.ov_job, args.store, workload)
    modules = [v.load() for v in variants]
    scores = [score(workload, m) for m in modules]
    sizes = [v.weight_bytes for v in variants]
    spec = LatencySpec(threads=THREADS, warmup=3, repeats=10, passes=5, budget_s=1.0)
    example = tuple(workload.example_inputs)
    timings = {
        batch: compare_latency(modules, timing_inputs(example, batch), spec) for batch in (32, 1)
    }
    print(
        f"MiniLM-L6 / STS-B ({'packaged dev' if args.data is None else args.data}; scored "
        f"pairs), seq 128, {THREADS} threads, 5 interleaved passes; CPU: {cpu_flags()}; "
        f"OpenVINO {ov.__version__}\n"
    )
    print(
        "| variant | Spearman | weight MB | smaller | b32 ms | b32 vs ORT fp32 (spread) "
        "| b1 ms | b1 vs ORT fp32 (spread) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for i, variant in enumerate(variants):
        big, one = timings[32][i], timings[1][i]
        print(
            f"| {variant.name} | {scores[i]:.2f} | {sizes[i] / 1e6:.1f} | "
            f"{sizes[0] / sizes[i]:.2f}x | {big.latency.median_ms:.0f} | {big.speedup:.2f}x "
            f"({big.speedup_min:.2f}-{big.speedup_max:.2f}) | {one.latency.median_ms:.1f} | "
            f"{one.speedup:.2f}x ({one.speedup_min:.2f}-{one.speedup_max:.2f}) |"
        )
    if args.plot:
        plot(args.plot, [v.name for v in variants], scores, sizes, [t.speedup for t in timings[32]])


def plot(
    path: Path,
    names: list[str],
    scores: list[float],
    sizes: list[int],
    speedups: list[float],
) -> None:
    """Speed-up and size against Spearman: the front as dots, each baseline its own marker.

    Only points within 8% of fp32's score are drawn (the rest are counted in the title), so the
    region a user would pick from is readable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = scores[0] * 0.92
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    markers = iter("sD^v<>PX*hHpd8")
    colors = iter(["tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"] * 3)
    hidden = 0
    for i, name in enumerate(names):
        if scores[i] < floor:
            hidden += 1
            continue
        style = (
            {"marker": "o", "color": "tab:blue", "label": "bitprism front, ORT"}
            if name.startswith("bitprism") and "ort-cpu" in name
            else {"marker": "o", "color": "tab:orange", "label": "bitprism front, OpenVINO"}
            if name.startswith("bitprism")
            else {"marker": next(markers), "color": next(colors), "s": 60, "label": name}
        )
        for ax, x in ((axes[0], speedups[i]), (axes[1], sizes[0] / sizes[i])):
            ax.scatter(x, scores[i], **style)
            style = {**style, "label": None}
    axes[0].set_xlabel("speed-up over ORT fp32, b32 x 128 (2 threads)")
    axes[1].set_xlabel("times smaller than fp32 (weight bytes)")
    for ax in axes:
        ax.set_ylabel("STS-B Spearman x 100")
        ax.axhline(scores[0] * 0.99, color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(
        "MiniLM-L6 / STS-B: bitprism fronts and stock baselines (dotted: 1% below fp32; "
        f"{hidden} front points below {floor:.1f} not drawn)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nplot written to {path}")


if __name__ == "__main__":
    main()
