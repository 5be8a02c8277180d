"""Warm start: the candidates of least predicted damage for a range of byte and time budgets.

The search space is a product of per-layer choices; what a blind sampler lacks is which layers
can take a compression cheaply. Given each choice's predicted damage
(:mod:`bitprism.sensitivity.damage`) and its exact bytes in the backend's file, an integer
program (:mod:`bitprism.search.program`, HAWQ-V3 style) picks one form per layer and one keep
fraction per prunable group that minimise the summed damage within a budget of bytes and one
of time. Half the budgets are byte budgets spread geometrically from the smallest file the
space allows to the fp32 size, each with the layers no slower than in fp32 (the default export
wants both); the other half are time budgets from the fastest the space allows to fp32. The
solutions are the study's first trials, measured like any other: a wrong prediction costs a
trial, never a wrong report.

Costs come from :mod:`bitprism.search.costs` (bytes from the backend's emitters, time measured
per layer form), for the shape the groups around a layer leave it (rows kept by the group it
produces for, columns by the group it consumes from).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitprism.compression.structured import PruneGroup, kept_units
from bitprism.search.costs import LayerCosts, Shape
from bitprism.search.program import Program, Term
from bitprism.sensitivity.damage import DamageTable, offered_forms
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.space import SearchSpace


@dataclass(frozen=True)
class Seed:
    """A warm-start candidate with what the program predicted for it."""

    candidate: Candidate
    damage: float
    layer_bytes: int
    smaller: float  # fp32 layer bytes / these layer bytes
    faster: float  # fp32 layer milliseconds / these (measured per layer form)
    budget: str  # "bytes" (layers no slower than fp32 too) or "time"

    def predictions(self) -> dict[str, float]:
        """What the program predicted, as trial metrics (checked against the measured ones)."""
        return {
            "predicted_damage": self.damage,
            "predicted_layer_smaller": self.smaller,
            "predicted_layer_speedup": self.faster,
        }


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


@dataclass(frozen=True)
class Prediction:
    """What the warm start's tables say of one candidate: summed damage, and the layers'
    bytes and milliseconds (as the program counts them)."""

    damage: float
    layer_bytes: float
    layer_ms: float

    def clearly_beats(self, other: Prediction, damage_ratio: float, time_ratio: float) -> bool:
        """No more bytes, ``time_ratio`` of the time or less, ``damage_ratio`` times less
        damage or better: a margin over the predictions' own errors."""
        return (
            self.layer_bytes <= other.layer_bytes
            and self.layer_ms <= time_ratio * other.layer_ms
            and self.damage * damage_ratio <= other.damage
        )


class Predictor:
    """Predicts any candidate of a space from the tables the warm start was posed with."""

    def __init__(
        self,
        space: SearchSpace,
        damage: DamageTable,
        costs: LayerCosts,
        groups: Sequence[PruneGroup] = (),
    ) -> None:
        self.slots = _slots(space, groups)
        self.program = Program(
            self.slots.sizes(), tuple(_terms(space, damage, costs, groups, self.slots)), 2
        )

    def predict(self, candidate: Candidate) -> Prediction:
        """The candidate's prediction; a ValueError if it uses a choice the space lacks."""
        picks = [0] * len(self.slots.index)
        for (kind, name), slot in self.slots.index.items():
            choice = candidate[name]
            try:
                if kind == "form":
                    picks[slot] = self.slots.forms[name].index(
                        dataclasses.replace(choice, keep=1.0)
                    )
                else:
                    picks[slot] = self.slots.keeps[name].index(choice.keep)
            except ValueError:
                raise ValueError(f"layer {name!r}: {choice} is not in the space") from None
        value, spent = self.program.evaluate(picks)
        return Prediction(float(value), float(spent[0]), float(spent[1]))


def warm_start(predictor: Predictor, budgets: int = 8) -> list[Seed]:
    """Up to ``budgets`` distinct candidates of least predicted damage, one per budget (the
    uncompressed model left out), from the program ``predictor`` holds."""
    slots, program = predictor.slots, predictor.program
    fp32 = program.evaluate([0] * len(slots.index))[1]  # option 0: no compression
    smallest = program.solve([None, float(fp32[1])], minimise=0)
    fastest = program.solve([None, None], minimise=1)
    if smallest is None or fastest is None:  # fp32 itself fits: cannot happen
        raise RuntimeError("the warm-start program has no solution")
    low_bytes = float(program.evaluate(smallest)[1][0])
    low_ms = float(program.evaluate(fastest)[1][1])
    by_bytes = (budgets + 1) // 2
    limits: list[tuple[str, list[float | None]]] = [
        ("bytes", [_between(low_bytes, float(fp32[0]), k, by_bytes), float(fp32[1])])
        for k in range(by_bytes)
    ]
    by_time = budgets - by_bytes
    limits += [
        ("time", [None, _between(low_ms, float(fp32[1]), k, by_time)]) for k in range(by_time)
    ]
    seeds: dict[Candidate, Seed] = {}
    for budget, limit in limits:
        picks = program.solve(limit)
        if picks is None:
            continue
        candidate = _candidate(slots, picks)
        if all(choice.is_identity for _, choice in candidate):
            continue
        value, spent = program.evaluate(picks)
        seeds.setdefault(
            candidate,
            Seed(
                candidate,
                value,
                int(spent[0]),
                float(fp32[0] / spent[0]),
                float(fp32[1] / spent[1]) if spent[1] > 0 else 1.0,
                budget,
            ),
        )
    return list(seeds.values())


def _between(low: float, high: float, k: int, count: int) -> float:
    """The ``k``-th of ``count`` budgets spread geometrically from ``low`` up to ``high``."""
    if low <= 0:
        return high * k / count
    return low * (high / low) ** (k / count)


def pruned_shapes(space: SearchSpace, groups: Sequence[PruneGroup]) -> dict[str, list[Shape]]:
    """Every (kept rows, kept columns) each layer can have under the space's keep options."""
    slots = _slots(space, groups)
    out = {}
    for layer in space.layers:
        produced, consumed = _around(layer.name, groups, slots)
        rows = _kept(produced, slots, layer.out_features, rows=True)
        cols = _kept(consumed, slots, layer.weight_shape[1], rows=False)
        out[layer.name] = [(r, c) for r in rows for c in cols]
    return out


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
    space: SearchSpace,
    damage: DamageTable,
    costs: LayerCosts,
    groups: Sequence[PruneGroup],
    slots: _Slots,
) -> list[Term]:
    terms = []
    for leader, offered in slots.keeps.items():
        values = np.array([damage.keeps[leader][k] for k in offered])
        terms.append(Term((slots.index["keep", leader],), values, np.zeros((len(offered), 2))))
    for layer in space.layers:
        forms = slots.forms[layer.name]
        form_slot = slots.index["form", layer.name]
        values = np.array([damage.forms[layer.name][f] for f in forms])
        produced, consumed = _around(layer.name, groups, slots)
        rows = _kept(produced, slots, layer.out_features, rows=True)
        cols = _kept(consumed, slots, layer.weight_shape[1], rows=False)
        table = np.array(
            [
                [
                    [
                        [
                            costs.bytes_of(layer, f, (r, c)),
                            costs.milliseconds(layer.name, f, (r, c)),
                        ]
                        for c in cols
                    ]
                    for r in rows
                ]
                for f in forms
            ],
            dtype=np.float64,
        )
        related = [slots.index["keep", g.leader] for g in (*produced, *consumed)]
        table = table.reshape(len(forms), *(len(x) for x in (rows, cols) if len(x) > 1), 2)
        terms.append(Term((form_slot,), values, np.zeros((len(forms), 2))))
        terms.append(Term((form_slot, *related), np.zeros(table.shape[:-1]), table))
    return terms


def _around(
    name: str, groups: Sequence[PruneGroup], slots: _Slots
) -> tuple[list[PruneGroup], list[PruneGroup]]:
    """The searched groups whose keep prunes ``name``'s rows, and those that prune its
    columns (at most one each)."""
    produced = [g for g in groups if name in g.producers and g.leader in slots.keeps]
    consumed = [g for g in groups if name in g.consumers and g.leader in slots.keeps]
    if len(produced) > 1 or len(consumed) > 1:
        raise ValueError(f"layer {name!r} is pruned by more than one group per side")
    return produced, consumed


def _kept(around: list[PruneGroup], slots: _Slots, full: int, rows: bool) -> list[int]:
    """The kept row (or column) counts of a layer for each keep option of the group
    ``around`` it on that side (a unit is ``unit_size`` rows of a producer, an equal block of a
    consumer's ``full`` columns), or just ``full``."""
    if not around:
        return [full]
    group = around[0]
    width = group.unit_size if rows else full // group.units
    return [kept_units(group.units, k) * width for k in slots.keeps[group.leader]]


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
    smaller = sorted(s.smaller for s in seeds)
    faster = sorted(s.faster for s in seeds)
    return (
        f"warm start: {len(seeds)} integer-program seeds of least predicted damage, layers "
        f"{smaller[0]:.1f}x to {smaller[-1]:.1f}x smaller and {faster[0]:.2f}x to "
        f"{faster[-1]:.2f}x faster by their forms' timings"
    )
