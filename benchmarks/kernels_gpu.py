"""bitprism's GPU Linear forms against torch fp16 (cuBLAS), in one run on one device.

    .venv/bin/pip install -e '.[gpu]'
    .venv/bin/python benchmarks/kernels_gpu.py                 # on a CUDA GPU
    TRITON_INTERPRET=1 .venv/bin/python benchmarks/kernels_gpu.py --cpu-check   # plumbing only

For MiniLM-L6's Linear shapes (384->384, 384->1536, 1536->384) and a 4096x4096 layer, at
batch 1, 16 and 128 tokens: fp16 cuBLAS, W4A16 (the Triton kernel on the ONNX export's
MatMulNBits packing, groups of 128), W8A8 (``torch._int_mm``), 2:4 semi-structured sparse
fp16, and low rank (two fp16 GEMMs at a quarter of the rank). Each is timed with Triton's
``do_bench`` (warm-up, L2 flushed before every run, median), and reported as time, speed-up
over fp16, achieved GB/s (weights + activations in and out over the time), TFLOP/s (the
dense layer's 2*M*N*K, so forms compare on one scale) and the share of the device's peak
memory bandwidth. The goal of issue 11: W4A16 at batch 1 on 4096x4096 at >= 70% of peak and
faster than fp16. The device name, CUDA, torch and Triton versions are printed with it.

``--cpu-check`` runs every form once on small sizes on CPU (the Triton kernel interpreted)
and checks each against the dense layer: it proves the script, not the speed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bitprism.compression.quantize import quantize_symmetric
from bitprism.kernels import triton_nbits
from bitprism.kernels.ort_lowering import pack_nbits
from bitprism.kernels.torch_ops import W8A8Linear
from bitprism.kernels.torch_sparse24 import Sparse24Linear, mask_2_4

SHAPES = {  # name: (in, out)
    "minilm qkvo 384->384": (384, 384),
    "minilm ffn 384->1536": (384, 1536),
    "minilm ffn 1536->384": (1536, 384),
    "4096x4096": (4096, 4096),
}
BATCHES = (1, 16, 128)
GROUP = 128
PEAK_GBS = {"H100": 3350.0, "H200": 4800.0, "A100": 2039.0}  # HBM, SXM parts (vendor sheets)


@dataclass(frozen=True)
class Form:
    """One way to run a layer: its call on the input and the weight bytes it reads."""

    name: str
    call: Callable[[torch.Tensor], torch.Tensor]
    weight_bytes: int


def forms(weight: torch.Tensor, dtype: torch.dtype) -> list[Form]:
    """Every form of the fp32 ``weight`` (out, in), on ``weight``'s device, in ``dtype``."""
    out_features, in_features = weight.shape
    device = weight.device
    dense = weight.to(dtype)
    nbits = quantize_symmetric(weight.float().cpu(), 4, GROUP)
    packed, scales = (torch.from_numpy(a).to(device) for a in pack_nbits(nbits))
    w8 = W8A8Linear(quantize_symmetric(weight.float().cpu(), 8, in_features), None).to(device)
    sparse = Sparse24Linear((weight * mask_2_4(weight)).to(dtype), None)
    rank = max(16, min(out_features, in_features) // 4)
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    first = (s[:rank, None] * vh[:rank]).to(dtype)  # (rank, in)
    second = u[:, :rank].to(dtype).contiguous()  # (out, rank)
    item = torch.finfo(dtype).bits // 8
    return [
        Form(
            "fp16 cuBLAS" if device.type == "cuda" else f"dense {dtype}",
            lambda x: x @ dense.T,
            dense.numel() * item,
        ),
        Form(
            "W4A16 triton",
            lambda x: triton_nbits.nbits_matmul(x, packed, scales, 4, GROUP),
            packed.numel() + scales.numel() * 4,
        ),
        Form("W8A8 _int_mm", w8, w8.codes.numel() + w8.scales.numel() * 4),
        Form("2:4 sparse", sparse, dense.numel() * item // 2 + dense.numel() // 8),
        Form(
            f"low rank r={rank}",
            lambda x: (x @ first.T) @ second.T,
            (first.numel() + second.numel()) * item,
        ),
    ]


def time_ms(call: Callable[[], object], cuda: bool) -> float:
    """Median milliseconds of ``call``: Triton's do_bench on CUDA (L2 flushed each run)."""
    if cuda:
        from triton.testing import do_bench

        return float(do_bench(call, warmup=50, rep=200, return_mode="median"))
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        call()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def peak_gbs(name: str, given: float | None) -> float | None:
    if given is not None:
        return given
    return next((gbs for key, gbs in PEAK_GBS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu-check", action="store_true", help="small sizes on CPU, checked")
    parser.add_argument("--peak-gbs", type=float, help="the device's peak memory GB/s")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.cpu_check
    if not cuda and not args.cpu_check:
        raise SystemExit("no CUDA device: run on a GPU, or --cpu-check to test the script")
    device = "cuda" if cuda else "cpu"
    dtype = torch.float16 if cuda else torch.float32
    shapes = SHAPES if cuda else {"small 256->128": (256, 128)}
    name = torch.cuda.get_device_name() if cuda else "CPU (interpreted check, not timed)"
    peak = peak_gbs(name, args.peak_gbs) if cuda else None
    print(
        f"device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}, triton "
        f"{__import__('triton').__version__}; peak {peak or '?'} GB/s\n"
    )
    print("| layer | batch | form | us | vs fp16 | GB/s | TFLOP/s | % peak BW |")
    print("|---|---|---|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)
    for label, (k, n) in shapes.items():
        weight = (torch.randn(n, k, generator=generator) / k**0.5).to(device)
        layer_forms = forms(weight, dtype)
        for batch in BATCHES:
            x = torch.randn(batch, k, generator=generator).to(device, dtype)
            reference = None
            for form in layer_forms:
                out = form.call(x)
                if args.cpu_check:  # every form is an approximation of the dense layer
                    dense = x.float() @ weight.float().T
                    error = ((out.float() - dense).norm() / dense.norm()).item()
                    assert error < 0.8, f"{form.name} on {label}: relative error {error:.2f}"
                ms = time_ms(lambda form=form, x=x: form.call(x), cuda)
                reference = reference or ms
                moved = form.weight_bytes + x.numel() * x.element_size() * (1 + n / k)
                gbs = moved / (ms / 1000) / 1e9
                tflops = 2 * batch * n * k / (ms / 1000) / 1e12
                share = f"{gbs / peak:.0%}" if peak else "?"
                print(
                    f"| {label} | {batch} | {form.name} | {ms * 1000:.1f} | "
                    f"{reference / ms:.2f}x | {gbs:.0f} | {tflops:.2f} | {share} |"
                )


if __name__ == "__main__":
    main()
