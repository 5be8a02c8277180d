"""OpenVINO CPU backend: static int8 (QDQ with calibrated input scales) and the weight-only
forms OpenVINO keeps compressed, in true f32 compute.

Measured on OpenVINO 2026.4.1 (``benchmarks/openvino_forms.py``): it reads the ONNX Runtime
contrib ops ``MatMulNBits`` (4 and 2 bits) and ``GatherBlockQuantized`` (4 and 8 bits) and runs
them as u4/u2 FullyConnected and u4/u8 Gather nodes. ORT's dynamic int8 form
(DynamicQuantizeLinear + MatMulInteger) runs as float in OpenVINO, slower than fp32, so int8 is
lowered as QDQ with a static input scale calibrated per candidate instead
(:mod:`bitprism.kernels.openvino_lowering`), which runs as integer FullyConnected / Convolution.

Compute precision is the job's choice: true f32 (``INFERENCE_PRECISION_HINT: f32``; OpenVINO's
own default is bf16 where the CPU has it), or bf16, refused on a CPU without bf16 arithmetic
(AVX512-BF16 or AMX) rather than silently run in f32. Dynamic activation quantisation is off,
so an f32 file computes what the PyTorch candidate computes and the parity check holds to float
rounding; in bf16 the file differs from it by bf16 rounding (about 1% relative RMS on MiniLM).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
import openvino as ov
import torch

from bitprism.compression.apply import CompressedLayer
from bitprism.compression.quantize import InputQuant, InputQuantKind, embedding_block
from bitprism.config import Precision
from bitprism.kernels.base import Artifact, RuntimeModule, register_backend
from bitprism.kernels.machine import OnCpu
from bitprism.kernels.onnx_export import lower_candidate
from bitprism.kernels.openvino_lowering import EMITTERS, INT8_BITS, lower_layer
from bitprism.kernels.ort_lowering import emitted_bytes, layer_model
from bitprism.spaces.candidate import OFF_BITS
from bitprism.spaces.layer import LayerInfo, LayerKind
from bitprism.workloads.base import Workload

_HINTS = {Precision.FP32: ov.Type.f32, Precision.BF16: ov.Type.bf16}
_INTEGER_WEIGHTS = ("u8", "i8", "u4", "i4", "u2")  # not i32/i64: index and shape Gathers
_BLOCKED_BITS = (4, 2)  # MatMulNBits: a partial block of 128 is decompressed to f32


class OpenVinoCpuBackend(OnCpu):
    """OpenVINO's CPU plugin, f32 compute, static int8 and weight-only compressed layers."""

    name = "openvino-cpu"
    version = ov.get_version()
    precisions: tuple[Precision, ...] = (Precision.FP32, Precision.BF16)
    suffix = ".onnx"
    lowers_onnx = True

    def weight_bits(self, layer: LayerInfo) -> tuple[int, ...]:
        if layer.kind is LayerKind.EMBEDDING and embedding_block(layer.in_features) is None:
            return (OFF_BITS,)
        offered = tuple(EMITTERS[layer.kind])
        if layer.kind is LayerKind.LINEAR and layer.in_features % 128:
            return tuple(b for b in offered if b not in _BLOCKED_BITS)
        return offered

    def supports_low_rank(self, layer: LayerInfo) -> bool:
        return layer.kind is LayerKind.LINEAR

    def sparse_pattern(self, layer: LayerInfo) -> tuple[int, int] | None:
        return None  # no sparse kernel: any sparsity is unstructured

    def gains_from(self, knob: str) -> bool:
        return knob != "sparsity"  # no sparse kernel for these layers

    def input_quant(self, layer: LayerInfo, bits: int, group_size: int) -> InputQuant | None:
        if bits == INT8_BITS and layer.kind is not LayerKind.EMBEDDING:
            return InputQuant(InputQuantKind.STATIC_U8)  # QuantizeLinear, calibrated scale
        return None  # 4/2-bit weights are decompressed and multiplied by the f32 input

    def build(
        self,
        base_onnx: bytes,
        layers: tuple[LayerInfo, ...],
        compressed: Mapping[str, CompressedLayer],
        source: Workload,
    ) -> Artifact:
        return lower_candidate(base_onnx, layers, compressed, lower_layer)

    def layer_bytes(self, layer: LayerInfo, compressed: CompressedLayer) -> int:
        return emitted_bytes(EMITTERS, "OpenVINO", layer, compressed)

    def layer_model(
        self,
        layer: LayerInfo,
        compressed: CompressedLayer,
        node: onnx.NodeProto,
        input_shape: tuple[int, ...],
        opsets: Sequence[onnx.OperatorSetIdProto],
    ) -> bytes:
        return layer_model(EMITTERS, "OpenVINO", layer, compressed, node, input_shape, opsets)

    def float_layers(self, module: RuntimeModule, compressed: Mapping[str, CompressedLayer]) -> int:
        """Quantised factors built minus the FullyConnected / Convolution / Gather nodes that run
        on integer weights in the runtime model (e.g. 4-bit weights with a partial block of 128
        are decompressed to f32). Counted, not named: a decompressed node keeps no name of the
        layer it came from."""
        if not isinstance(module, OpenVinoModule):
            raise TypeError(f"not an OpenVINO module: {type(module).__name__}")
        built = sum(f.quantized is not None for c in compressed.values() for f in c.factors)
        ran = sum(p in _INTEGER_WEIGHTS for p in runtime_precisions(module).values())
        return max(built - ran, 0)

    def load(
        self, data: bytes, threads: int, precision: Precision = Precision.FP32
    ) -> OpenVinoModule:
        if precision not in _HINTS:
            raise ValueError(f"openvino-cpu computes in fp32 or bf16, not {precision.value}")
        wanted = _HINTS[precision]
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": wanted.get_type_name(),
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
        }
        core = ov.Core()
        compiled = core.compile_model(core.read_model(model=data), "CPU", config)
        ran = compiled.get_property("INFERENCE_PRECISION_HINT")
        if ran != wanted:
            raise ValueError(
                f"OpenVINO cannot compute in {precision.value} on this CPU (it would run "
                f"{ran.get_type_name()}): bf16 needs AVX512-BF16 or AMX; use precision fp32"
            )
        return OpenVinoModule(compiled)


class OpenVinoModule(RuntimeModule):
    """A compiled OpenVINO model behind ``forward``."""

    def __init__(self, compiled: ov.CompiledModel) -> None:
        super().__init__()
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        results = self.request.infer(self._arrays(inputs))
        tensors = tuple(
            torch.from_numpy(np.array(results[output])) for output in self.compiled.outputs
        )
        return tensors[0] if len(tensors) == 1 else tensors

    def bind(self, inputs: Sequence[torch.Tensor]) -> Callable[[], object]:
        arrays = self._arrays(inputs)
        return lambda: self.request.infer(arrays)

    def _arrays(self, inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        if len(inputs) != len(self.compiled.inputs):
            raise ValueError(
                f"the model takes {len(self.compiled.inputs)} inputs, got {len(inputs)}"
            )
        return [t.detach().cpu().numpy() for t in inputs]


def supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 on this machine (AVX512-BF16 or AMX)."""
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def runtime_precisions(module: OpenVinoModule) -> dict[str, str]:
    """Each FullyConnected / Convolution / Gather node of the compiled model and its precision
    (``u4``: weights kept 4-bit; ``f32``: decompressed or float), by original layer names."""
    found = {}
    for op in module.compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("FullyConnected", "Convolution", "Gather"):
            found[info["originalLayersNames"].astype(str)] = info["runtimePrecision"].astype(str)
    return found


@register_backend("openvino-cpu")
def _make() -> OpenVinoCpuBackend:
    return OpenVinoCpuBackend()
