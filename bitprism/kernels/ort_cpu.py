"""ONNX Runtime CPU backend: what stock onnxruntime runs fast, its sessions and its timing.

The forms each layer is lowered to are described in :mod:`bitprism.kernels.ort_lowering`.
Sessions use a fixed thread count, one inter-op thread and every graph optimisation, the
settings a user deploying on a CPU would pick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from bitprism.compression.apply import CompressedLayer
from bitprism.compression.quantize import InputQuant, InputQuantKind, embedding_block
from bitprism.config import Precision
from bitprism.kernels.base import Artifact, RuntimeModule, register_backend
from bitprism.kernels.machine import OnCpu
from bitprism.kernels.onnx_export import lower_candidate
from bitprism.kernels.ort_lowering import EMITTERS, emitted_bytes, layer_model, lower_layer
from bitprism.spaces.candidate import OFF_BITS
from bitprism.spaces.layer import LayerInfo, LayerKind
from bitprism.workloads.base import Workload


class OrtCpuBackend(OnCpu):
    """Kernels of stock ``onnxruntime`` on the CPU execution provider."""

    name = "ort-cpu"
    version = ort.__version__
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    suffix = ".onnx"
    lowers_onnx = True

    def weight_bits(self, layer: LayerInfo) -> tuple[int, ...]:
        if layer.kind is LayerKind.EMBEDDING and embedding_block(layer.in_features) is None:
            return (OFF_BITS,)
        return tuple(EMITTERS[layer.kind])

    def supports_low_rank(self, layer: LayerInfo) -> bool:
        return layer.kind is LayerKind.LINEAR

    def sparse_pattern(self, layer: LayerInfo) -> tuple[int, int] | None:
        return None  # no sparse kernel: any sparsity is unstructured

    def gains_from(self, knob: str) -> bool:
        # No sparse kernel: zeros are stored and multiplied like any other weight.
        return knob != "sparsity"

    def input_quant(self, layer: LayerInfo, bits: int, group_size: int) -> InputQuant | None:
        if layer.kind is LayerKind.EMBEDDING:  # a lookup: the indices are not quantised
            return None
        if bits >= 7:  # DynamicQuantizeLinear in front of MatMulInteger / ConvInteger
            return InputQuant(InputQuantKind.PER_TENSOR_U8)
        if bits < 8:  # MatMulNBits with accuracy_level 4 quantises its input per block
            return InputQuant(InputQuantKind.PER_BLOCK_S8, block=group_size)
        return None

    def build(
        self,
        base_onnx: bytes,
        layers: tuple[LayerInfo, ...],
        compressed: Mapping[str, CompressedLayer],
        source: Workload,
    ) -> Artifact:
        return lower_candidate(base_onnx, layers, compressed, lower_layer)

    def layer_bytes(self, layer: LayerInfo, compressed: CompressedLayer) -> int:
        return emitted_bytes(EMITTERS, "ONNX Runtime", layer, compressed)

    def layer_model(
        self,
        layer: LayerInfo,
        compressed: CompressedLayer,
        node: onnx.NodeProto,
        input_shape: tuple[int, ...],
        opsets: Sequence[onnx.OperatorSetIdProto],
    ) -> bytes:
        return layer_model(EMITTERS, "ONNX Runtime", layer, compressed, node, input_shape, opsets)

    def float_layers(self, module: RuntimeModule, compressed: Mapping[str, CompressedLayer]) -> int:
        return 0  # ORT reports no per-node precision; benchmarks/ort_cpu_forms.py times forms

    def load(self, data: bytes, threads: int, precision: Precision = Precision.FP32) -> OrtModule:
        if precision is not Precision.FP32:
            raise ValueError(f"ort-cpu computes in fp32 only, not {precision.value}")
        return OrtModule(make_session(data, threads))


def make_session(model_bytes: bytes, threads: int) -> ort.InferenceSession:
    """A CPU session with a fixed thread count and full graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


class OrtModule(RuntimeModule):
    """An ONNX Runtime session behind ``forward``."""

    def __init__(self, session: ort.InferenceSession) -> None:
        super().__init__()
        self.session = session

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, self._feeds(inputs))
        tensors = tuple(torch.from_numpy(np.asarray(o)) for o in outputs)
        return tensors[0] if len(tensors) == 1 else tensors

    def bind(self, inputs: Sequence[torch.Tensor]) -> Callable[[], object]:
        feed = self._feeds(inputs)
        return lambda: self.session.run(None, feed)

    def _feeds(self, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        """Positional tensors to the session's named inputs."""
        names = [i.name for i in self.session.get_inputs()]
        if len(names) != len(inputs):
            raise ValueError(f"the ONNX model takes {len(names)} inputs, got {len(inputs)}")
        return {name: t.detach().cpu().numpy() for name, t in zip(names, inputs, strict=True)}


@register_backend("ort-cpu")
def _make() -> OrtCpuBackend:
    return OrtCpuBackend()
