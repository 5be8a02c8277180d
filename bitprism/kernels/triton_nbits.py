"""W4A16 / W2A16 on GPU: a Triton matmul that unpacks group-wise quantised weights in
registers and multiplies them with fp16/bf16 (or fp32) activations.

The weights come in exactly the layout the ONNX export gives ``com.microsoft.MatMulNBits``
(:func:`bitprism.kernels.ort_lowering.pack_nbits`): uint8 of shape (N, blocks, block*bits/8),
the codes of one output row in blocks of ``group`` along the input, each code stored
unsigned with zero point ``2**(bits-1)``, low bits first (for 4 bits: element ``2i`` in
the low nibble of byte ``i``, ``2i+1`` in the high one); one float scale per (row, block).
So the same packed bytes serve the ONNX file and this kernel, and a code means the same
number in both: ``w = (u - 2**(bits-1)) * scale``.

Hand-written because no maintained library runs this layout: torch has no sub-8-bit GEMM for
arbitrary group-wise codes, and the libraries that do (e.g. Marlin, bitsandbytes) want their
own packing, which would make the GPU file differ from the codes the search measured.

Each program computes a (BLOCK_M, BLOCK_N) tile of ``x @ w.T``. It walks the packed bytes
of its N rows BLOCK_KB at a time; for each of the ``8/bits`` codes in a byte it unpacks a
(BLOCK_KB, BLOCK_N) slice, scales it by its block's scale and feeds ``tl.dot`` with the
matching strided columns of ``x`` (code ``j`` of byte ``i`` is input column
``i*(8/bits)+j``), so nothing is interleaved in registers. Accumulation is fp32.

Without CUDA the kernel runs under Triton's interpreter (``TRITON_INTERPRET=1``, set before
this module is imported) on CPU tensors: that is how CI checks it. :func:`dequantize` is the
torch reference, and the CPU fallback.
"""

from __future__ import annotations

import os

import torch

try:  # triton is the optional `gpu` extra
    import triton
    import triton.language as tl
except ImportError:  # the extra is not installed: available() says so
    triton = None  # type: ignore[assignment]

__all__ = ["available", "dequantize", "nbits_matmul"]

BITS = (2, 4)  # codes per byte must be a power of two that fills it
BLOCK_M, BLOCK_N, BLOCK_KB = 16, 64, 32  # tile sizes legal for compiled Triton (dot >= 16)


def available() -> bool:
    """Whether the Triton kernel can run here: triton installed, and CUDA or the interpreter."""
    return triton is not None and (
        torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
    )


def dequantize(
    packed: torch.Tensor, scales: torch.Tensor, bits: int, group: int, k: int
) -> torch.Tensor:
    """The float weight (N, k) that ``packed`` and ``scales`` encode (the torch reference)."""
    _check(packed, scales, bits, group, k)
    per_byte = 8 // bits
    n = packed.shape[0]
    flat = packed.reshape(n, -1).to(torch.int32)
    shifts = torch.arange(per_byte, dtype=torch.int32, device=packed.device) * bits
    codes = (flat.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)  # (N, bytes, per_byte)
    signed = codes.reshape(n, -1) - (1 << (bits - 1))
    expanded = scales.reshape(n, -1).float().repeat_interleave(group, dim=1)
    return (signed.float() * expanded)[:, :k]


def nbits_matmul(
    x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, bits: int, group: int
) -> torch.Tensor:
    """``x @ w.T`` for the packed weight ``w`` (N, K), K = ``x.shape[-1]``, computed by the
    Triton kernel; the result has ``x``'s dtype and leading shape.

    Raises:
        RuntimeError: Triton is not installed, or neither CUDA nor its interpreter is on.
        ValueError: the packed weight does not match ``bits``, ``group`` or ``x``.
    """
    if not available():
        raise RuntimeError(
            "the Triton kernel needs the `gpu` extra (pip install 'bitprism[gpu]') and a CUDA "
            "device, or TRITON_INTERPRET=1 to run it on CPU"
        )
    k = x.shape[-1]
    _check(packed, scales, bits, group, k)
    n = packed.shape[0]
    rows = x.reshape(-1, k)
    out = torch.empty((rows.shape[0], n), dtype=x.dtype, device=x.device)
    flat = packed.reshape(n, -1).contiguous()
    per_block = scales.reshape(n, -1).contiguous()
    grid = (triton.cdiv(rows.shape[0], BLOCK_M), triton.cdiv(n, BLOCK_N))
    _nbits_kernel[grid](
        rows, flat, per_block, out,
        rows.shape[0], n, k, flat.shape[1], per_block.shape[1],
        rows.stride(0), rows.stride(1), out.stride(0), out.stride(1),
        BITS=bits, GROUP=group, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_KB=BLOCK_KB,
    )  # fmt: skip
    return out.reshape(*x.shape[:-1], n)


def _check(packed: torch.Tensor, scales: torch.Tensor, bits: int, group: int, k: int) -> None:
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, not {bits}")
    per_byte = 8 // bits
    if group < per_byte or group % per_byte:
        raise ValueError(f"group {group} must be a multiple of {per_byte} ({bits}-bit codes)")
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed weights must be uint8, not {packed.dtype}")
    n = packed.shape[0]
    blocks = -(-k // group)
    if packed.numel() != n * blocks * group // per_byte:
        raise ValueError(
            f"packed weights of shape {tuple(packed.shape)} do not hold {n} rows of {blocks} "
            f"blocks of {group} {bits}-bit codes (input size {k})"
        )
    if scales.numel() != n * blocks:
        raise ValueError(f"{scales.numel()} scales for {n} rows of {blocks} blocks")


if triton is not None:

    @triton.jit
    def _nbits_kernel(
        x_ptr, w_ptr, s_ptr, out_ptr,
        M, N, K, ROW_BYTES, GROUPS,
        stride_xm, stride_xk, stride_om, stride_on,
        BITS: tl.constexpr, GROUP: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_KB: tl.constexpr,
    ):  # type: ignore[no-untyped-def]  # fmt: skip
        per_byte: tl.constexpr = 8 // BITS
        zero: tl.constexpr = 1 << (BITS - 1)
        mask: tl.constexpr = (1 << BITS) - 1
        rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        rb = tl.arange(0, BLOCK_KB)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start in range(0, ROW_BYTES, BLOCK_KB):
            byte = start + rb  # (BLOCK_KB,)
            inside = (byte[:, None] < ROW_BYTES) & (rn[None, :] < N)
            packed = tl.load(w_ptr + rn[None, :] * ROW_BYTES + byte[:, None], mask=inside, other=0)
            packed = packed.to(tl.int32)
            for j in tl.static_range(per_byte):
                col = byte * per_byte + j  # the input column of code j of each byte
                code = ((packed >> (j * BITS)) & mask) - zero
                scale = tl.load(
                    s_ptr + rn[None, :] * GROUPS + (col // GROUP)[:, None], mask=inside, other=0.0
                )
                x = tl.load(
                    x_ptr + rm[:, None] * stride_xm + col[None, :] * stride_xk,
                    mask=(rm[:, None] < M) & (col[None, :] < K),
                    other=0.0,
                )
                w = (code.to(tl.float32) * scale).to(x.dtype)
                acc += tl.dot(x, w)
        out = out_ptr + rm[:, None] * stride_om + rn[None, :] * stride_on
        tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))
