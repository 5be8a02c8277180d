"""MiniLM on STS-B: what users pick today in one line, next to bitprism's front, side by side.

Every variant is an ONNX file scored with the workload's metric (Spearman x 100 on the scored
STS-B pairs) and timed in stock onnxruntime against fp32 in the same interleaved passes, at
batch 32 x 128 tokens and batch 1 x 128, 2 threads. Prints a markdown table (with the CPU's
flags) and, with matplotlib installed (``pip install -e '.[bench]'``), writes a plot.

    .venv/bin/python benchmarks/minilm_baselines.py [--data PATH] \\
        [--job JOB --store sqlite:///bitprism.db] [--plot docs/minilm_front.png]

The stock baselines start from a plain ``torch.onnx.export`` (its optimiser folds the weight
transposes, which ORT's quantisers need); bitprism's own files start from its fp32 export.
OpenVINO + NNCF is not here yet: it comes with the OpenVINO backend.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

from bitprism.compression.structured import find_groups, unit_order
from bitprism.config import LatencySpec
from bitprism.evaluators.accuracy import score
from bitprism.evaluators.latency import compare_latency, cpu_flags, timing_inputs
from bitprism.evaluators.worker import EvalContext, build_candidate
from bitprism.kernels.base import get_backend
from bitprism.kernels.onnx_export import export_base
from bitprism.kernels.onnx_graph import initializer_bytes, strip_metadata
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import Workload, resolve_workload

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
    workload: Workload, base: bytes, choose: dict[LayerKind, LayerChoice], ffn_keep: float
) -> bytes:
    """A hand-made bitprism candidate: one choice per layer kind, FFN groups pruned."""
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
    ctx = EvalContext(workload, layers, base, "ort-cpu", "", 0.05, 1.0, tuple(groups), order)
    return build_candidate(ctx, Candidate.from_dict(choices)).artifact.data


def front_files(job: str, store: str, workload: Workload) -> list[tuple[str, bytes]]:
    from bitprism.results import SearchResult

    result = SearchResult(job, store, workload=workload)
    return [
        (f"bitprism {job} {p.label}", result.onnx_file(p))
        for p in result.pareto
        if not p.is_reference
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--job", default=None)
    parser.add_argument("--store", default="sqlite:///bitprism.db")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    workload = resolve_workload("minilm-stsb", data=args.data)
    base = export_base(workload)
    plain = plain_export(workload)
    with tempfile.TemporaryDirectory() as tmp:
        variants = [
            ("fp32 (bitprism's export)", base),
            ("fp32 (plain torch.onnx.export)", plain),
            ("ORT quantize_dynamic int8", stock_int8(plain, Path(tmp))),
            ("ORT MatMulNBits int4 (block 128)", stock_int4(plain)),
        ]
    variants += [
        (
            "int7 linears (u8s8) + 4-bit embeddings",
            ours(
                workload,
                base,
                {
                    LayerKind.LINEAR: LayerChoice(weight_bits=7),
                    LayerKind.EMBEDDING: LayerChoice(weight_bits=4),
                },
                1.0,
            ),
        ),
        ("FFN keep 0.75 (fp32)", ours(workload, base, {}, 0.75)),
    ]
    if args.job:
        variants += front_files(args.job, args.store, workload)
    backend = get_backend("ort-cpu")
    modules = [backend.load(data, THREADS) for _, data in variants]
    scores = [score(workload, m) for m in modules]
    sizes = [initializer_bytes(onnx.load_model_from_string(d)) for _, d in variants]
    spec = LatencySpec(threads=THREADS, warmup=3, repeats=10, passes=5, budget_s=1.0)
    example = tuple(workload.example_inputs)
    timings = {
        batch: compare_latency(modules, timing_inputs(example, batch), spec) for batch in (32, 1)
    }
    print(
        f"MiniLM-L6 / STS-B ({'packaged dev' if args.data is None else args.data}; scored "
        f"pairs), seq 128, {THREADS} threads, 5 interleaved passes; CPU: {cpu_flags()}\n"
    )
    print(
        "| variant | Spearman | weight MB | smaller | b32 ms | b32 speed-up (spread) "
        "| b1 ms | b1 speed-up (spread) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for i, (name, _) in enumerate(variants):
        big, one = timings[32][i], timings[1][i]
        print(
            f"| {name} | {scores[i]:.2f} | {sizes[i] / 1e6:.1f} | {sizes[0] / sizes[i]:.2f}x | "
            f"{big.latency.median_ms:.0f} | {big.speedup:.2f}x ({big.speedup_min:.2f}-"
            f"{big.speedup_max:.2f}) | {one.latency.median_ms:.1f} | {one.speedup:.2f}x "
            f"({one.speedup_min:.2f}-{one.speedup_max:.2f}) |"
        )
    if args.plot:
        plot(args.plot, variants, scores, sizes, [t.speedup for t in timings[32]])


def plot(
    path: Path,
    variants: list[tuple[str, bytes]],
    scores: list[float],
    sizes: list[int],
    speedups: list[float],
) -> None:
    """Speed-up and size against Spearman: the front as dots, each baseline its own marker.

    Only points within 8% of fp32's score are drawn (the rest are counted in the title), so the
    region a user would pick from is readable.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\nno plot: matplotlib is missing (pip install -e '.[bench]'); {path} not written")
        return
    floor = scores[0] * 0.92
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    markers = iter("sD^v<>PX*")
    hidden = 0
    for i, (name, _) in enumerate(variants):
        if scores[i] < floor:
            hidden += 1
            continue
        front = name.startswith("bitprism")
        style = (
            {"marker": "o", "color": "tab:blue", "label": "bitprism front" if i else None}
            if front
            else {"marker": next(markers), "s": 60, "label": name}
        )
        for ax, x in ((axes[0], speedups[i]), (axes[1], sizes[0] / sizes[i])):
            ax.scatter(x, scores[i], **style)
            style = {**style, "label": None}
    axes[0].set_xlabel("speed-up over fp32, b32 x 128 (ORT CPU, 2 threads)")
    axes[1].set_xlabel("times smaller than fp32 (weight bytes)")
    for ax in axes:
        ax.set_ylabel("STS-B Spearman x 100")
        ax.axhline(scores[0] * 0.99, color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(
        "MiniLM-L6 / STS-B: bitprism front and stock baselines (dotted: 1% below fp32; "
        f"{hidden} front points below {floor:.1f} not drawn)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nplot written to {path}")


if __name__ == "__main__":
    main()
