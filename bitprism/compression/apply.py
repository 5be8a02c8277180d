"""Apply a candidate to a copy of a model: factorise, prune exactly, quantise, each with the
job's registered method (:mod:`bitprism.compression.methods`).

Structured pruning (whole units) is done before this, by :mod:`bitprism.compression.structured`;
the codes come from :mod:`bitprism.compression.quantize`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bitprism.compression.methods import LayerStats, MethodKind, chosen, needed
from bitprism.compression.methods.plain import n_of_m_mask
from bitprism.compression.quantize import (
    InputQuant,
    InputQuantFor,
    QuantizedInput,
    QuantizedMatrix,
    group_size_for,
)
from bitprism.config import Methods
from bitprism.spaces.candidate import OFF_BITS, Candidate, LayerChoice
from bitprism.spaces.knobs import low_rank
from bitprism.spaces.layer import LayerInfo, LayerKind
from bitprism.workloads.base import Inputs, as_tuple

# layer -> the N:M sparsity pattern (N, M) the backend's sparse kernel runs for it, if any
PatternFor = Callable[[LayerInfo], tuple[int, int] | None]

# No calibration data needed: truncated SVD, magnitude pruning, round-to-nearest.
PLAIN = Methods(factoriser="svd", pruner="magnitude", quantiser="rtn")


@dataclass(frozen=True)
class Factor:
    """One weight matrix of a compressed layer: its effective fp32 values and, if quantised, codes.

    ``weight`` keeps the layer's own weight shape (conv kernels stay 4-D). ``input_quant`` is
    how the backend's kernel quantises this matmul's input (with its calibrated scale for a
    static kind), set by :func:`compress_model`.
    """

    weight: torch.Tensor
    quantized: QuantizedMatrix | None
    input_quant: InputQuant | None = None


@dataclass(frozen=True)
class CompressedLayer:
    """A layer after compression: ``y = x @ f0.T @ f1.T ... + bias`` (or a conv with ``f0``)."""

    choice: LayerChoice
    factors: tuple[Factor, ...]
    bias: torch.Tensor | None


def compress_layer(
    layer: LayerInfo,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    choice: LayerChoice,
    input_quant: InputQuantFor | None = None,
    methods: Methods = PLAIN,
    stats: LayerStats | None = None,
    pattern: tuple[int, int] | None = None,
) -> CompressedLayer:
    """Factorise, then prune each factor exactly, then quantise each factor, each step with the
    method ``methods`` names for it (the registry in :mod:`bitprism.compression.methods`).

    ``stats`` is what the calibration data says about this layer, for the data-aware methods;
    the second factor of a low rank sees the first's outputs, so its input Gram matrix is
    derived (A G A^T for the compressed first factor A). ``input_quant`` (the backend's) gives
    each quantised factor the input quantiser its kernel uses (static ones still uncalibrated).
    ``pattern`` (N, M), the backend's sparse kernel's: a sparsity above 0 keeps the N largest
    |w| of every M along each factor's input instead of the job's pruner (a factor whose input
    width is not a multiple of M is left dense: no kernel would run its zeros faster).
    """
    stats = stats or LayerStats()
    if choice.rank_fraction < 1.0:
        if layer.kind is not LayerKind.LINEAR:
            raise ValueError(f"layer {layer.name!r}: low rank is only defined for Linear layers")
        factorise = chosen(methods, MethodKind.FACTORISER).apply
        matrices = list(factorise(weight, low_rank(layer, choice.rank_fraction), stats))
    else:
        matrices = [weight.detach()]
    prune = chosen(methods, MethodKind.PRUNER).apply
    quantise = chosen(methods, MethodKind.QUANTISER).apply
    gram = stats.input_gram
    factors = []
    for matrix in matrices:
        own = LayerStats(input_gram=gram, fisher=stats.fisher if len(matrices) == 1 else None)
        if pattern is not None and choice.sparsity > 0:
            fits = matrix.shape[1] % pattern[1] == 0
            pruned = matrix.detach() * n_of_m_mask(matrix, *pattern) if fits else matrix.detach()
        else:
            pruned = prune(matrix, choice.sparsity, own)
        quantized = None
        if choice.weight_bits != OFF_BITS:
            rows = pruned.reshape(pruned.shape[0], -1)
            group = group_size_for(choice.weight_bits, rows.shape[1], layer.kind)
            quantized = quantise(rows, choice.weight_bits, group, own)
            pruned = quantized.dequantize().reshape(pruned.shape)
        quant = None
        if quantized is not None and input_quant is not None:
            quant = input_quant(layer, quantized.bits, quantized.group_size)
        factors.append(Factor(weight=pruned.float(), quantized=quantized, input_quant=quant))
        if gram is not None and len(matrices) > 1:
            first = pruned.double()
            gram = first @ gram.double() @ first.T
    return CompressedLayer(
        choice=choice,
        factors=tuple(factors),
        bias=None if bias is None else bias.detach().float().clone(),
    )


def compress_model(
    model: nn.Module,
    layers: tuple[LayerInfo, ...],
    candidate: Candidate,
    input_quant: InputQuantFor | None = None,
    calibration: Sequence[Inputs] = (),
    methods: Methods = PLAIN,
    stats: Mapping[str, LayerStats] | None = None,
    pattern: PatternFor | None = None,
) -> tuple[nn.Module, dict[str, CompressedLayer]]:
    """A compressed deep copy of ``model`` and each changed layer's compressed form.

    The original model is left untouched. Layers whose choice is the identity are skipped;
    structured pruning (``keep``) is applied before this, by ``structured.prune_model``, so
    ``model`` may already be the pruned one.
    ``input_quant`` (the backend's) says how each quantised matmul's input is quantised at run
    time; the copy reproduces it, so it computes what the deployed file computes. Static input
    quantisers are calibrated on ``calibration`` (each input's min and max over all batches,
    measured with every weight already compressed) and their scales kept in the factors.
    ``methods`` compress each layer; ``stats`` (from :func:`bitprism.sensitivity.stats.
    candidate_stats`, on ``model``) must hold every layer whose choice uses a method that
    needs calibration statistics. ``pattern`` (the backend's) gives each layer the N:M sparsity
    pattern its sparse kernel runs, if any (see :func:`compress_layer`).
    """
    compressed_model = copy.deepcopy(model).eval()
    compressed: dict[str, CompressedLayer] = {}
    replaced_modules: dict[str, nn.Module] = {}
    for layer in layers:
        choice = candidate[layer.name]
        if dataclasses.replace(choice, keep=1.0).is_identity:  # pruning is done before this
            continue
        module = compressed_model.get_submodule(layer.name)
        weight = module.get_parameter("weight")
        layer = dataclasses.replace(layer, weight_shape=tuple(weight.shape))  # maybe pruned
        result = compress_layer(
            layer,
            module.get_parameter("weight"),
            getattr(module, "bias", None),
            choice,
            input_quant,
            methods,
            _stats_of(layer.name, choice, methods, stats),
            None if pattern is None else pattern(layer),
        )
        compressed[layer.name] = result
        replaced = _as_module(module, result)
        set_submodule(compressed_model, layer.name, replaced)
        replaced_modules[layer.name] = replaced
    _calibrate(compressed_model, calibration)
    for name, replaced in replaced_modules.items():
        wrappers = list(replaced) if isinstance(replaced, nn.Sequential) else [replaced]
        factors = tuple(
            dataclasses.replace(factor, input_quant=wrapper.quant)
            if isinstance(wrapper, QuantizedInput)
            else factor
            for factor, wrapper in zip(compressed[name].factors, wrappers, strict=True)
        )
        compressed[name] = dataclasses.replace(compressed[name], factors=factors)
    return compressed_model, compressed


def _stats_of(
    name: str, choice: LayerChoice, methods: Methods, stats: Mapping[str, LayerStats] | None
) -> LayerStats:
    """``stats[name]``, or a ValueError if the choice's methods need statistics not given."""
    if stats is not None and name in stats:
        return stats[name]
    if needed(methods, methods_used(choice)):
        raise ValueError(
            f"layer {name!r}: its methods ({methods}) need calibration statistics and none "
            "were measured for it (see bitprism.sensitivity.stats.candidate_stats)"
        )
    return LayerStats()


def methods_used(choice: LayerChoice) -> frozenset[MethodKind]:
    """Which kinds of method ``choice`` runs (a plain copy runs none)."""
    used = set()
    if choice.rank_fraction < 1.0:
        used.add(MethodKind.FACTORISER)
    if choice.sparsity > 0.0:
        used.add(MethodKind.PRUNER)
    if choice.weight_bits != OFF_BITS:
        used.add(MethodKind.QUANTISER)
    return frozenset(used)


def _calibrate(model: nn.Module, calibration: Sequence[Inputs]) -> None:
    """Fit every static input quantiser of ``model`` to its inputs' range on ``calibration``."""
    static = [
        m for m in model.modules() if isinstance(m, QuantizedInput) and m.quant.needs_calibration
    ]
    if not static:
        return
    if not calibration:
        raise ValueError("static input quantisation needs calibration batches; none were given")
    for wrapper in static:
        wrapper.observing = True
    try:
        with torch.no_grad():
            for batch in calibration:
                model(*as_tuple(batch))
    finally:
        for wrapper in static:
            wrapper.observing = False
    for wrapper in static:
        if wrapper.seen is None:
            raise ValueError("a statically quantised layer saw no input during calibration")
        wrapper.quant = wrapper.quant.calibrated(*wrapper.seen)


def _as_module(original: nn.Module, layer: CompressedLayer) -> nn.Module:
    if len(layer.factors) == 1:
        replaced = copy.deepcopy(original)
        with torch.no_grad():
            replaced.get_parameter("weight").copy_(layer.factors[0].weight)
        return _with_input_quant(replaced, layer.factors[0])
    chain: list[nn.Module] = []
    for i, factor in enumerate(layer.factors):
        bias = layer.bias if i == len(layer.factors) - 1 else None
        chain.append(_with_input_quant(linear_of(factor.weight, bias), factor))
    return nn.Sequential(*chain)


def linear_of(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` (out, in) and ``bias``."""
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.get_parameter("bias").copy_(bias)
    return linear


def _with_input_quant(module: nn.Module, factor: Factor) -> nn.Module:
    return module if factor.input_quant is None else QuantizedInput(module, factor.input_quant)


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``name`` of ``model``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
