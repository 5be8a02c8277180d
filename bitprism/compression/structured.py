"""Structured pruning: remove whole units (FFN neurons, attention heads, conv channels).

A unit is removed from every layer it couples: the rows (output channels) of the layers that
produce it and the columns (input channels) of the layers that consume it, so what is left is a
smaller *dense* model that is faster on any runtime. Which layers couple is found by tracing
with torch-pruning's ``DependencyGraph`` (DepGraph), not from layer names; torch-pruning also
does the surgery (weights, biases, and what sits between). What it does not decide is which
units to remove: that is ranked here by activation-weighted importance on calibration data,

    importance(unit) = sqrt(sum of its squared inputs to each consumer)
                       x norm of the consumer's weight columns that read it,

summed over the consumers: a unit matters as much as what it feeds forward. A group is only
offered where its units end in a compressible layer and touch no normalisation, embedding or
model output (pruning a residual stream or a classifier's classes is not this knob).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import LayerInfo
from bitprism.workloads.base import Inputs, as_tuple

_LAYER_TYPES = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class PruneGroup:
    """Units that are removed together: ``leader``'s output units and all they couple to.

    ``producers`` lose output channels, ``consumers`` input channels; a unit is
    ``unit_size`` consecutive output channels of each producer (an attention head's
    ``head_dim``, else 1).
    """

    leader: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    units: int
    unit_size: int


def find_groups(
    model: nn.Module, example: Inputs, layers: Sequence[LayerInfo]
) -> tuple[list[PruneGroup], dict[str, str]]:
    """The prunable groups of ``model`` led by its compressible layers, and why others are not.

    Traced on two rows of ``example``; each layer leads at most one group and a layer that
    produces for an earlier leader's group leads none.
    """
    graph = _graph(model, example)
    names = {module: name for name, module in model.named_modules()}
    wanted = {layer.name for layer in layers}
    groups: list[PruneGroup] = []
    skipped: dict[str, str] = {}
    claimed: set[str] = set()
    for layer in layers:
        module = model.get_submodule(layer.name)
        if layer.name in claimed or not isinstance(module, _LAYER_TYPES):
            continue
        group = graph.get_pruning_group(
            module, _out_fn(module), idxs=list(range(layer.out_features))
        )
        producers: list[str] = []
        consumers: list[str] = []
        blockers: list[str] = []
        for dep, _ in group.items:
            target = dep.target.module
            name = names.get(target)
            if isinstance(target, _LAYER_TYPES) and name in wanted:
                out = graph.is_out_channel_pruning_fn(dep.handler)
                (producers if out else consumers).append(name)
            elif isinstance(target, nn.Module) and any(True for _ in target.parameters(False)):
                blockers.append(f"{name or type(target).__name__} ({type(target).__name__})")
        producers, consumers = list(dict.fromkeys(producers)), list(dict.fromkeys(consumers))
        if blockers:
            skipped[layer.name] = f"its output units also feed {', '.join(blockers[:3])}"
            continue
        if not consumers:
            skipped[layer.name] = "its output units reach the model output, not another layer"
            continue
        unit_size = _head_size(model, producers)
        if unit_size is None:
            skipped[layer.name] = "attention heads of unknown size (no attention_head_size)"
            continue
        units = layer.out_features // unit_size
        if units < 2:
            continue
        widths = [model.get_submodule(c).get_parameter("weight").shape[1] for c in consumers]
        if any(width % units for width in widths):
            skipped[layer.name] = "a consumer reads its units in a layout not traced here"
            continue
        claimed.update(producers)
        groups.append(PruneGroup(layer.name, tuple(producers), tuple(consumers), units, unit_size))
    return groups, skipped


def unit_order(
    model: nn.Module, groups: Sequence[PruneGroup], calibration: Sequence[Inputs]
) -> dict[str, tuple[int, ...]]:
    """Per group leader, its units from most to least important on ``calibration``."""
    consumers = {name for group in groups for name in group.consumers}
    squares: dict[str, torch.Tensor] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().double()
            per_input = (
                x.pow(2).sum(dim=tuple(d for d in range(x.dim()) if d != 1))
                if isinstance(module, nn.Conv2d)
                else x.pow(2).reshape(-1, x.shape[-1]).sum(dim=0)
            )
            squares[name] = squares.get(name, 0) + per_input

        return hook

    handles = [
        model.get_submodule(name).register_forward_pre_hook(record(name)) for name in consumers
    ]
    try:
        with torch.no_grad():
            for batch in calibration:
                model(*as_tuple(batch))
    finally:
        for handle in handles:
            handle.remove()
    order = {}
    for group in groups:
        score = torch.zeros(group.units, dtype=torch.float64)
        for name in group.consumers:
            weight = model.get_submodule(name).get_parameter("weight").detach().double()
            columns = weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)
            per_unit = group.units
            activation = squares[name].sqrt()
            # A consumer reads each unit as a block of inputs (a head's dims, a channel's
            # flattened pixels): fold both per-input vectors into per-unit sums.
            score += (activation * columns).reshape(per_unit, -1).sum(dim=1)
        ranked = sorted(range(group.units), key=lambda u: (-float(score[u]), u))
        order[group.leader] = tuple(ranked)
    return order


def kept_units(units: int, keep: float) -> int:
    """How many of ``units`` a keep fraction leaves (at least one)."""
    return max(1, round(keep * units))


def prune_model(
    model: nn.Module,
    groups: Sequence[PruneGroup],
    order: Mapping[str, tuple[int, ...]],
    candidate: Candidate,
    example: Inputs,
) -> nn.Module:
    """A deep copy of ``model`` with each group's least important units removed.

    The keep fraction of a group is its leader's ``keep`` choice. The original is untouched.
    """
    pruned = copy.deepcopy(model).eval()
    active = [g for g in groups if candidate[g.leader].keep < 1.0]
    if not active:
        return pruned
    graph = _graph(pruned, example)
    for group in active:
        keep = kept_units(group.units, candidate[group.leader].keep)
        removed = order[group.leader][keep:]
        idxs = [u * group.unit_size + j for u in removed for j in range(group.unit_size)]
        module = pruned.get_submodule(group.leader)
        graph.get_pruning_group(module, _out_fn(module), idxs=idxs).prune()
    return pruned


def _graph(model: nn.Module, example: Inputs) -> tp.DependencyGraph:
    rows = tuple(t[:2] for t in as_tuple(example))
    return tp.DependencyGraph().build_dependency(model, example_inputs=rows)


def _out_fn(module: nn.Module) -> object:
    if isinstance(module, nn.Linear):
        return tp.prune_linear_out_channels
    return tp.prune_conv_out_channels


def _head_size(model: nn.Module, producers: list[str]) -> int | None:
    """1 for plain channels; an attention block's head size when Q/K/V-like layers couple."""
    if len(producers) < 2:
        return 1
    parent_name = producers[0].rpartition(".")[0]
    parent = model.get_submodule(parent_name) if parent_name else model
    size = getattr(parent, "attention_head_size", None) or getattr(parent, "head_dim", None)
    return int(size) if isinstance(size, int) and size > 0 else None
