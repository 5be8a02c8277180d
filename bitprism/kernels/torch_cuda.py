"""torch CUDA backend: the candidate as a ``torch.export`` program on the GPU, each compressed
Linear run by a kernel that exploits its form.

- 4 and 2 bits: :class:`~bitprism.kernels.torch_ops.NBitsLinear`, the Triton W4A16 / W2A16
  kernel on the same packed bytes the ONNX export gives MatMulNBits, fp16/bf16 activations.
- 8 bits: :class:`~bitprism.kernels.torch_ops.W8A8Linear`, an int8 GEMM (``torch._int_mm``)
  with per-channel weight scales and per-token activation scales.
- Sparsity: the 2:4 pattern (at most 2 non-zeros in every 4 weights along the input), which
  fp16 / bf16 weights run on the sparse tensor cores through ``to_sparse_semi_structured``
  (the conversion happens at load: the file holds the dense zeros and names those weights).
  Unstructured sparsity is not offered: no GPU kernel skips scattered zeros.
- Low rank: the two factors as two GEMMs, each in its own form.
- Everything else runs as the fp32 model does, in the job's precision (cuBLAS).

Convolutions and embeddings are offered no compressed form yet.

The artifact is a ``.pt2`` file (``torch.export.save``) holding the program and its
tensors; ``torch.export.load`` runs it after ``import bitprism.kernels.torch_ops``, which
registers the kernels as operators. A job's precision (fp16 / bf16) is applied at load
time: weights cast, the program run under ``torch.autocast``, as a user deploying it would.
A call is timed by CUDA events around the run alone, after L2 is flushed (Triton's
``do_bench`` does the same): a small model's weights would otherwise stay in L2 between
repeats and hide what reading fewer bytes from memory gains.

The backend can be made for another device (``TorchCudaBackend("cpu")``): the operators then
run their torch arithmetic, which is how CI checks building, loading and parity without a GPU.
"""

from __future__ import annotations

import copy
import io
import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.export.passes import move_to_device_pass
from torch.sparse import to_sparse_semi_structured
from torch.utils._pytree import tree_map

from bitprism.compression.apply import CompressedLayer, Factor, linear_of, set_submodule
from bitprism.compression.quantize import InputQuant, InputQuantKind
from bitprism.config import Precision
from bitprism.kernels import triton_nbits
from bitprism.kernels.base import Artifact, DeviceTime, RuntimeModule, register_backend
from bitprism.kernels.onnx_export import export_inputs
from bitprism.kernels.torch_ops import NBitsLinear, W8A8Linear
from bitprism.kernels.torch_sparse24 import SPARSE_DTYPES, is_2_4
from bitprism.spaces.candidate import OFF_BITS
from bitprism.spaces.layer import LayerInfo, LayerKind
from bitprism.workloads.base import Workload

DTYPES = {
    Precision.FP32: torch.float32,
    Precision.FP16: torch.float16,
    Precision.BF16: torch.bfloat16,
}
NO_GPU = "no CUDA GPU is visible to torch here (torch.cuda.is_available() is False)"
NO_TRITON = "Triton is not installed: pip install 'bitprism[gpu]'"
EXTRA = "bitprism.json"  # the .pt2's own record: which weights are 2:4 sparse
FLUSH_BYTES = 256 * 1024**2  # larger than any GPU's L2 (Triton's do_bench flushes as much)


class TorchCudaBackend:
    """Kernels of PyTorch and bitprism's Triton kernels, on a CUDA GPU."""

    precisions: tuple[Precision, ...] = (Precision.FP32, Precision.FP16, Precision.BF16)
    suffix = ".pt2"
    lowers_onnx = False  # it exports the (pruned) torch model with torch.export

    def __init__(self, device: str = "cuda") -> None:
        self.device = torch.device(device)
        self.name = "torch-cuda" if self.device.type == "cuda" else f"torch-{self.device.type}"
        self.gpus = int(self.device.type == "cuda")  # a task needs one, unless made for the CPU
        triton = triton_nbits.triton
        self.version = (
            f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"triton {getattr(triton, '__version__', 'absent')}"
        )

    def missing(self) -> str | None:
        """Why this machine cannot run the backend, or None."""
        if self.device.type != "cuda":
            return None
        if not torch.cuda.is_available():
            return NO_GPU
        return None if triton_nbits.triton is not None else NO_TRITON

    def machine(self) -> str:
        """What timings depend on besides the versions: the GPU and its driver."""
        if self.device.type != "cuda" or not torch.cuda.is_available():
            return f"torch on {self.device.type}"
        index = self.device.index or 0
        props = torch.cuda.get_device_properties(index)
        return f"{props.name} (sm_{props.major}{props.minor}, driver {_driver()})"

    def weight_bits(self, layer: LayerInfo) -> tuple[int, ...]:
        if layer.kind is not LayerKind.LINEAR:
            return (OFF_BITS,)
        return (OFF_BITS, 8, *sorted(triton_nbits.BITS, reverse=True))

    def supports_low_rank(self, layer: LayerInfo) -> bool:
        return layer.kind is LayerKind.LINEAR

    def sparse_pattern(self, layer: LayerInfo) -> tuple[int, int] | None:
        if layer.kind is LayerKind.LINEAR and layer.in_features % 4 == 0:
            return (2, 4)  # semi-structured sparsity: cuSPARSELt / CUTLASS
        return None

    def gains_from(self, knob: str) -> bool:
        return True  # 2:4 sparsity included: the measurement decides what it gains

    def input_quant(self, layer: LayerInfo, bits: int, group_size: int) -> InputQuant | None:
        if bits == 8:  # W8A8: symmetric int8 per token, over the whole row (quantize_tokens)
            return InputQuant(InputQuantKind.PER_BLOCK_S8, block=group_size)
        return None  # W4A16 / W2A16 multiply in float

    def build(
        self,
        base_onnx: bytes,
        layers: tuple[LayerInfo, ...],
        compressed: Mapping[str, CompressedLayer],
        source: Workload,
    ) -> Artifact:
        model = copy.deepcopy(source.model).eval()
        sparse = []
        for layer in layers:
            if layer.name in compressed:
                if layer.kind is not LayerKind.LINEAR:  # not offered: weight_bits above
                    raise ValueError(
                        f"{self.name} compresses Linear layers only; {layer.name} is a "
                        f"{layer.kind.value} in form {compressed[layer.name].choice}"
                    )
                set_submodule(model, layer.name, deployed_linear(compressed[layer.name]))
                sparse += sparse_weights(compressed[layer.name], f"{layer.name}.")
        inputs, dynamic = export_inputs(source)
        return _artifact(model, inputs, dynamic, sparse)

    def layer_bytes(self, layer: LayerInfo, compressed: CompressedLayer) -> int:
        return _tensor_bytes(_layer_module(layer, compressed, None))

    def layer_model(
        self,
        layer: LayerInfo,
        compressed: CompressedLayer,
        node: onnx.NodeProto,
        input_shape: tuple[int, ...],
        opsets: Sequence[onnx.OperatorSetIdProto],
    ) -> bytes:
        module = _layer_module(layer, compressed, node)
        if layer.kind is LayerKind.EMBEDDING:
            x = torch.zeros(input_shape, dtype=torch.int64)
        else:
            x = torch.zeros(input_shape)
        sparse = sparse_weights(compressed, "") if layer.kind is LayerKind.LINEAR else []
        return _artifact(module, (x,), None, sparse).data

    def float_layers(self, module: RuntimeModule, compressed: Mapping[str, CompressedLayer]) -> int:
        # Quantised forms always run their kernel; a 2:4 weight may not (see load).
        return module.dense_sparse if isinstance(module, TorchModule) else 0

    def load(self, data: bytes, threads: int, precision: Precision = Precision.FP32) -> TorchModule:
        if precision not in DTYPES:
            raise ValueError(f"torch-cuda computes in fp32, fp16 or bf16, not {precision.value}")
        reason = self.missing()
        if reason is not None:
            raise ValueError(f"torch-cuda cannot run here: {reason}")
        extra = {EXTRA: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.export.load(io.BytesIO(data), extra_files=extra)
            # The export records the devices it traced on (an arange's device=cpu): rewritten.
            module = move_to_device_pass(loaded, self.device).module()
        dtype = DTYPES[precision]
        if dtype is not torch.float32:
            _cast_floats(module, dtype)
        names = json.loads(extra[EXTRA] or "{}").get("sparse_2_4", [])
        dense = _to_semi_structured(module, names) if dtype in SPARSE_DTYPES else len(names)
        return TorchModule(module, self.device, dtype, dense, threads)


def deployed_linear(layer: CompressedLayer) -> nn.Module:
    """A compressed Linear layer as the GPU runs it: each factor in its kernel's form."""
    chain = []
    for i, factor in enumerate(layer.factors):
        bias = layer.bias if i == len(layer.factors) - 1 else None
        chain.append(_factor_module(factor, bias))
    return chain[0] if len(chain) == 1 else nn.Sequential(*chain)


def sparse_weights(layer: CompressedLayer, prefix: str) -> list[str]:
    """Names (under ``prefix``) of the weights of ``deployed_linear(layer)`` that hold the 2:4
    pattern: the unquantised factors of a sparse choice (a quantised one runs its own kernel
    with the zeros in its codes)."""
    if layer.choice.sparsity == 0.0:
        return []
    many = len(layer.factors) > 1
    return [
        f"{prefix}{i}.weight" if many else f"{prefix}weight"
        for i, factor in enumerate(layer.factors)
        if factor.quantized is None and is_2_4(factor.weight)
    ]


def _to_semi_structured(module: nn.Module, names: Sequence[str]) -> int:
    """Each named 2:4 weight of the loaded ``module`` as a semi-structured sparse tensor, which
    ``aten.linear`` runs on the sparse tensor cores; returns how many stay dense (on the CPU,
    or a shape the kernels refuse)."""
    dense = 0
    for name in names:
        owner, _, attr = name.rpartition(".")
        parent = module.get_submodule(owner) if owner else module
        weight = getattr(parent, attr)
        if not weight.is_cuda:
            dense += 1
            continue
        try:
            sparse = to_sparse_semi_structured(weight.detach())
        except (RuntimeError, ValueError):  # e.g. too small for the kernel's tiles
            dense += 1
            continue
        setattr(parent, attr, nn.Parameter(sparse, requires_grad=False))
    return dense


def _factor_module(factor: Factor, bias: torch.Tensor | None) -> nn.Module:
    quantized = factor.quantized
    if quantized is not None and quantized.bits == 8:
        return W8A8Linear(quantized, bias)
    if quantized is not None:
        return NBitsLinear(quantized, bias)
    return linear_of(factor.weight, bias)


def _layer_module(
    layer: LayerInfo, compressed: CompressedLayer, node: onnx.NodeProto | None
) -> nn.Module:
    """``layer`` alone in ``compressed``'s form; a convolution reads its stride, padding,
    dilation and groups from its exported ``node`` (None: only its tensors are wanted)."""
    if layer.kind is LayerKind.LINEAR:
        return deployed_linear(compressed)
    weight, bias = compressed.factors[0].weight, compressed.bias
    if layer.kind is LayerKind.EMBEDDING:
        return nn.Embedding.from_pretrained(weight, freeze=True)
    attrs = (
        {} if node is None else {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    )
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    groups = int(attrs.get("group", 1))
    conv = nn.Conv2d(
        weight.shape[1] * groups,
        weight.shape[0],
        (weight.shape[2], weight.shape[3]),
        stride=tuple(attrs.get("strides", [1, 1])),
        padding=tuple(pads[:2]),
        dilation=tuple(attrs.get("dilations", [1, 1])),
        groups=groups,
        bias=bias is not None,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.get_parameter("bias").copy_(bias)
    return conv


def _artifact(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    dynamic: tuple[dict, ...] | None,
    sparse: Sequence[str],
) -> Artifact:
    """``model`` exported on ``inputs`` and saved as ``.pt2`` bytes, with the names of its
    ``sparse`` 2:4 weights (the file's ``bitprism.json``) for :meth:`TorchCudaBackend.load`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, inputs, dynamic_shapes=dynamic, strict=False)
        buffer = io.BytesIO()
        extra = {EXTRA: json.dumps({"sparse_2_4": sorted(sparse)})}
        torch.export.save(program, buffer, extra_files=extra)
    return Artifact(buffer.getvalue(), _tensor_bytes(model), TorchCudaBackend.suffix)


def _tensor_bytes(module: nn.Module) -> int:
    """Bytes of every parameter and buffer of ``module`` (shared tensors once)."""
    seen = {t.data_ptr(): t for t in (*module.parameters(), *module.buffers())}
    return sum(t.numel() * t.element_size() for t in seen.values())


def _cast_floats(module: nn.Module, dtype: torch.dtype) -> None:
    """Float parameters and buffers to ``dtype``; integer codes and kernel scales stay."""
    for sub in module.modules():
        for name, tensor in [
            *sub.named_parameters(recurse=False),
            *sub.named_buffers(recurse=False),
        ]:
            if tensor.is_floating_point() and not name.endswith("scales"):
                tensor.data = tensor.data.to(dtype)


def _driver() -> str:
    """The NVIDIA kernel driver's version, e.g. ``580.159.03`` (torch does not report it; the
    driver's own /proc file does), or ``unknown``."""
    try:
        first = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"
    found = re.search(r"\b\d+\.\d+(?:\.\d+)?\b", first)
    return found.group(0) if found else "unknown"


class TorchModule(RuntimeModule):
    """A loaded ``torch-cuda`` program: inputs go to its device, outputs come back as fp32 on
    the CPU; a compute ``dtype`` other than fp32 runs under ``torch.autocast``."""

    def __init__(
        self,
        program: nn.Module,
        device: torch.device,
        dtype: torch.dtype,
        dense_sparse: int = 0,
        threads: int = 1,
    ) -> None:
        super().__init__()
        self.program = program
        self.device = device
        self.dtype = dtype
        self.dense_sparse = dense_sparse  # 2:4 weights it runs dense nevertheless
        self.threads = threads  # CPU threads of a run on the CPU, set around each run

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self._run(self._moved(inputs))
        back = tree_map(
            lambda t: t.detach().float().cpu() if isinstance(t, torch.Tensor) else t, outputs
        )
        return tuple(back) if isinstance(back, list) else back

    def bind(self, inputs: Sequence[torch.Tensor]) -> Callable[[], object]:
        moved = self._moved(inputs)
        if self.device.type != "cuda":
            return lambda: self._run(moved)
        flush = torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device=self.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def call() -> DeviceTime:
            flush.zero_()  # the weights leave L2: each run reads them from memory
            start.record()
            self._run(moved)
            end.record()
            end.synchronize()
            return DeviceTime(start.elapsed_time(end))

        return call

    def _moved(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(self.device) for t in inputs)

    def _run(self, inputs: tuple[torch.Tensor, ...]) -> object:
        threads = torch.get_num_threads()
        if self.device.type == "cpu":  # the process's own setting is restored after the run
            torch.set_num_threads(self.threads)
        try:
            with (
                torch.inference_mode(),
                torch.autocast(
                    self.device.type, dtype=self.dtype, enabled=self.dtype is not torch.float32
                ),
            ):
                return self.program(*inputs)
        finally:
            torch.set_num_threads(threads)


@register_backend("torch-cuda")
def _make() -> TorchCudaBackend:
    return TorchCudaBackend()
