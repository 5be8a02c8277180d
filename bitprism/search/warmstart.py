"""Warm start: the candidates of least predicted damage for a range of byte budgets.

The search space is a product of per-layer choices; what a blind sampler lacks is which layers
can take a compression cheaply. Given each choice's predicted damage
(:mod:`bitprism.sensitivity.damage`) and its exact bytes in the backend's file, an integer
program (:mod:`bitprism.search.program`, HAWQ-V3 style) picks one form per layer and one keep
fraction per prunable group that minimise the summed damage within a byte budget. Solved for
budgets spread geometrically from the smallest file the space allows to the fp32 size, its
solutions are the study's first trials: measured like any other, so a wrong prediction costs a
trial, never a wrong report.

Bytes come from the backend's own emitters (``Backend.layer_bytes``), not a formula: a layer's
form is priced with the shape the groups around it leave (rows kept by the group it produces
for, columns by the group it consumes from), so a candidate's predicted bytes are its file's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from bitprism.compression.apply import compress_layer
from bitprism.compression.structured import PruneGroup, kept_units
from bitprism.kernels.base import Backend
from bitprism.search.program import Program, Term
from bitprism.sensitivity.damage import DamageTable, offered_forms
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerInfo
from bitprism.spaces.space import SearchSpace


@dataclass(frozen=True)
class Seed:
    """A warm-start candidate with what the program predicted for it."""

    candidate: Candidate
    damage: float
    layer_bytes: int
    smaller: float  # fp32 layer bytes / these layer bytes


@dataclass(frozen=True)
class _Slots:
    """Where each decision sits in the program: a form slot per layer, a keep slot per group
    leader with more than one keep offered."""

    forms: dict[str, list[LayerChoice]]
    keeps: dict[str, list[float]]
    index: dict[tuple[str, str], int]  # ("form" | "keep", layer) -> slot

    def sizes(self) -> tuple[int, ...]:
        sizes = [0] * len(self.index)
        for (kind, name), slot in self.index.items():
            sizes[slot] = len(self.forms[name]) if kind == "form" else len(self.keeps[name])
        return tuple(sizes)


def warm_start(
    model: nn.Module,
    space: SearchSpace,
    damage: DamageTable,
    backend: Backend,
    groups: Sequence[PruneGroup] = (),
    budgets: int = 8,
) -> list[Seed]:
    """Up to ``budgets`` distinct candidates of least predicted damage, one per byte budget,
    from the smallest the space allows to just under fp32 (the uncompressed model is left out).

    ``model`` is the model the job compresses (BatchNorm folded): its layers give the shapes.
    """
    slots = _slots(space, groups)
    program = Program(slots.sizes(), tuple(_terms(model, space, damage, backend, groups, slots)), 1)
    smallest = program.solve([None], minimise=0)
    if smallest is None:  # cannot happen: every slot has an option; kept as a clear error
        raise RuntimeError("the warm-start program has no solution")
    low = float(program.evaluate(smallest)[1][0])
    high = float(program.evaluate([0] * len(slots.index))[1][0])  # option 0: no compression
    seeds: dict[Candidate, Seed] = {}
    for k in range(budgets):
        budget = low * (high / low) ** (k / budgets) if low > 0 else high * k / budgets
        picks = program.solve([math.ceil(budget)])
        if picks is None:
            continue
        candidate = _candidate(slots, picks)
        if all(choice.is_identity for _, choice in candidate):
            continue
        value, costs = program.evaluate(picks)
        seeds.setdefault(candidate, Seed(candidate, value, int(costs[0]), high / float(costs[0])))
    return list(seeds.values())


def _slots(space: SearchSpace, groups: Sequence[PruneGroup]) -> _Slots:
    leaders = {g.leader for g in groups}
    forms: dict[str, list[LayerChoice]] = {}
    keeps: dict[str, list[float]] = {}
    index: dict[tuple[str, str], int] = {}
    for layer in space.layers:
        forms[layer.name] = offered_forms(space, layer.name)  # the first is no compression
        index["form", layer.name] = len(index)
        offered = [float(k) for k in space.values(layer.name, "keep")]
        if layer.name in leaders and len(offered) > 1:
            keeps[layer.name] = offered
            index["keep", layer.name] = len(index)
    return _Slots(forms, keeps, index)


def _terms(
    model: nn.Module,
    space: SearchSpace,
    damage: DamageTable,
    backend: Backend,
    groups: Sequence[PruneGroup],
    slots: _Slots,
) -> list[Term]:
    terms = []
    for leader, offered in slots.keeps.items():
        values = np.array([damage.keeps[leader][k] for k in offered])
        terms.append(Term((slots.index["keep", leader],), values, np.zeros((len(offered), 1))))
    price = _pricer(backend)
    for layer in space.layers:
        forms = slots.forms[layer.name]
        form_slot = slots.index["form", layer.name]
        values = np.array([damage.forms[layer.name][f] for f in forms])
        produced = [g for g in groups if layer.name in g.producers and g.leader in slots.keeps]
        consumed = [g for g in groups if layer.name in g.consumers and g.leader in slots.keeps]
        if len(produced) > 1 or len(consumed) > 1:
            raise ValueError(f"layer {layer.name!r} is pruned by more than one group per side")
        weight = model.get_submodule(layer.name).get_parameter("weight")
        rows = _kept(produced, slots, layer.out_features, rows=True)
        cols = _kept(consumed, slots, weight.shape[1], rows=False)
        costs = np.array(
            [
                [[[price(layer, tuple(weight.shape), f, r, c)] for c in cols] for r in rows]
                for f in forms
            ],
            dtype=np.float64,
        )
        related = [slots.index["keep", g.leader] for g in (*produced, *consumed)]
        costs = costs.reshape(len(forms), *(len(x) for x in (rows, cols) if len(x) > 1), 1)
        terms.append(Term((form_slot,), values, np.zeros((len(forms), 1))))
        terms.append(Term((form_slot, *related), np.zeros(costs.shape[:-1]), costs))
    return terms


def _kept(around: list[PruneGroup], slots: _Slots, full: int, rows: bool) -> list[int]:
    """The kept row (or column) counts of a layer for each keep option of the group
    ``around`` it on that side (a unit is ``unit_size`` rows of a producer, an equal block of a
    consumer's ``full`` columns), or just ``full``."""
    if not around:
        return [full]
    group = around[0]
    width = group.unit_size if rows else full // group.units
    return [kept_units(group.units, k) * width for k in slots.keeps[group.leader]]


def _pricer(backend: Backend) -> Callable[[LayerInfo, tuple[int, ...], LayerChoice, int, int], int]:
    """Bytes of a layer's form at a pruned shape. They depend on the shape alone, not on the
    weights' values, so a deterministic stand-in weight is compressed and each (kind, shape,
    form) priced once: MiniLM's 36 layers share a handful of shapes."""

    @cache
    def price(
        layer: LayerInfo, shape: tuple[int, ...], form: LayerChoice, rows: int, cols: int
    ) -> int:
        pruned = (rows, cols, *shape[2:])
        info = dataclasses.replace(layer, name="priced", weight_shape=pruned)
        weight = torch.randn(pruned, generator=torch.Generator().manual_seed(0))
        bias = torch.zeros(rows) if layer.has_bias else None
        compressed = compress_layer(info, weight, bias, form, backend.input_quant)
        return backend.layer_bytes(info, compressed)

    def by_shape(
        layer: LayerInfo, shape: tuple[int, ...], form: LayerChoice, rows: int, cols: int
    ) -> int:
        key = dataclasses.replace(layer, name="", prune_units=0)
        return price(key, shape, form, rows, cols)

    return by_shape


def _candidate(slots: _Slots, picks: Sequence[int]) -> Candidate:
    layers: dict[str, LayerChoice] = {}
    for name, forms in slots.forms.items():
        form = forms[picks[slots.index["form", name]]]
        if name in slots.keeps:
            form = dataclasses.replace(
                form, keep=slots.keeps[name][picks[slots.index["keep", name]]]
            )
        layers[name] = form
    return Candidate.from_dict(layers)


def seed_summary(seeds: Sequence[Seed]) -> str:
    """One line for the job's log: how many seeds and the range of sizes they aim at."""
    if not seeds:
        return "warm start: no candidate smaller than fp32 in the space"
    ratios = sorted(s.smaller for s in seeds)
    return (
        f"warm start: {len(seeds)} integer-program seeds of least predicted damage, "
        f"{ratios[0]:.1f}x to {ratios[-1]:.1f}x smaller layers"
    )
