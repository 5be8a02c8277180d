"""Narrow a guided job's space before the search: choices the predictions say no one should
try are dropped, and the job records each one and why.

Two rules, from the damage table and the measured layer costs the warm start uses:

- **Tiny layers stay fp32.** A layer holding under :data:`TINY` of the model's compressible
  weight bytes *and* of their fp32 time cannot move either objective by more than that, but
  compressing it can cost accuracy (on digits the 1,280-weight classifier is the most
  sensitive layer per weight), so its weight bits, sparsity and rank are not searched. Its
  structured ``keep`` (it may lead a group of larger layers) stays.
- **Far-dominated values.** A form (bits x sparsity x rank) is dominated when another form of
  the same layer is no larger, no slower, and predicted at least :data:`FAR` times less
  damaging. A knob value goes when every form using it is dominated: the sampler would only
  spend trials finding that out.

Dominance needs both costs: a form that saves bytes is kept however damaging, since only the
measured trials can tell whether its damage is affordable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bitprism.search.costs import LayerCosts
from bitprism.sensitivity.damage import DamageTable, offered_forms
from bitprism.spaces.candidate import LayerChoice
from bitprism.spaces.knobs import Value
from bitprism.spaces.layer import LayerInfo
from bitprism.spaces.space import SearchSpace

TINY = 0.01
FAR = 10.0
FORM_KNOBS = ("weight_bits", "sparsity", "rank_fraction")


@dataclass(frozen=True)
class Dropped:
    """One value of one layer's knob taken out of the search, and why."""

    layer: str
    knob: str
    value: Value
    why: str

    def to_dict(self) -> dict[str, object]:
        return {"layer": self.layer, "knob": self.knob, "value": self.value, "why": self.why}


def narrow_space(
    space: SearchSpace, damage: DamageTable, costs: LayerCosts
) -> tuple[SearchSpace, list[Dropped]]:
    """``space`` without tiny layers' compression and far-dominated values, and what went."""
    fp32 = LayerChoice()
    size = {x.name: costs.bytes_of(x, fp32, costs.full[x.name]) for x in space.layers}
    time = {x.name: costs.form_ms[x.name][fp32] for x in space.layers}
    total_size, total_time = sum(size.values()), sum(time.values())
    dropped: list[Dropped] = []
    for layer in space.layers:
        forms = offered_forms(space, layer.name)
        if len(forms) < 2:
            continue
        share_size = size[layer.name] / total_size if total_size > 0 else 0.0
        share_time = time[layer.name] / total_time if total_time > 0 else 0.0
        if share_size < TINY and share_time < TINY:
            why = (
                f"a tiny layer ({share_size:.1%} of the weight bytes, {share_time:.1%} of their "
                "fp32 time): stays fp32"
            )
            dropped += [
                Dropped(layer.name, knob, value, why)
                for knob in FORM_KNOBS
                for value in space.values(layer.name, knob)[1:]
            ]
        else:
            dropped += _far_dominated(space, layer, forms, damage.forms[layer.name], costs)
    return space.without([(d.layer, d.knob, d.value) for d in dropped]), dropped


def _far_dominated(
    space: SearchSpace,
    layer: LayerInfo,
    forms: Sequence[LayerChoice],
    table: Mapping[LayerChoice, float],
    costs: LayerCosts,
) -> list[Dropped]:
    """The knob values of ``layer`` every form of which is far dominated (module docstring)."""
    cost = {
        f: (costs.bytes_of(layer, f, costs.full[layer.name]), costs.form_ms[layer.name][f])
        for f in forms
    }
    beaten: dict[LayerChoice, LayerChoice] = {}
    for form in forms:
        for other in forms:
            no_worse = all(o <= f for o, f in zip(cost[other], cost[form], strict=True))
            if other != form and no_worse and table[form] > FAR * table[other]:
                beaten[form] = other
                break
    dropped = []
    for knob in FORM_KNOBS:
        for value in space.values(layer.name, knob)[1:]:
            users = [f for f in forms if getattr(f, knob) == value]
            if not users or not all(f in beaten for f in users):
                continue
            example = users[0]
            why = (
                f"every form with it is predicted {FAR:g}x+ more damaging than one no larger "
                f"and no slower (e.g. {_label(example)}: {table[example]:.3g} against "
                f"{_label(beaten[example])}: {table[beaten[example]]:.3g})"
            )
            dropped.append(Dropped(layer.name, knob, value, why))
    return dropped


def _label(form: LayerChoice) -> str:
    parts = [f"int{form.weight_bits}" if form.weight_bits != 16 else "fp32"]
    if form.sparsity > 0:
        parts.append(f"{form.sparsity:.0%} sparse")
    if form.rank_fraction < 1:
        parts.append(f"rank {form.rank_fraction:g}")
    return " ".join(parts)


def dropped_summary(dropped: Sequence[Dropped]) -> str:
    """One line for the job's notes: how much the space was narrowed."""
    if not dropped:
        return "space: nothing dropped (no tiny layer, no far-dominated choice)"
    layers = sorted({d.layer for d in dropped})
    tiny = sorted({d.layer for d in dropped if "tiny layer" in d.why})
    text = f"space: {len(dropped)} choice(s) dropped on {len(layers)} layer(s)"
    if tiny:
        text += f"; kept fp32 as tiny: {', '.join(tiny)}"
    return text + " (bitprism status JOB --json lists each and why)"
