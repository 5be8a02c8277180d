"""Predicted damage Omega of every choice the space offers: what the integer program minimises.

Omega is the rise of the distillation loss to fp32 (:mod:`bitprism.sensitivity.loss`) a choice
causes, per layer or group, added over the model:

- **Bits and unstructured sparsity**, from the Fisher diagonal F
  (:mod:`bitprism.sensitivity.fisher`): to second order around the fp32 weights, where the loss
  and its gradient are zero, a perturbation delta costs 0.5 sum_i F_i delta_i^2. delta is
  W - C(W) for the very compression the candidate applies (``compress_layer``: its codes,
  groups and scales), so this is HAWQ-V2's Tr(H)/n ||W - Q(W)||^2 with each weight weighted
  by its own curvature. Rounding errors are small and nearly independent, which is where a
  diagonal is right: on digits it predicts 7- and 4-bit damage within 1.5x of the measured loss.
- **Structured keep and low rank**, measured: the loss of the model with only that change
  (made in place and undone), one forward pass over the calibration batches each. Removing
  units or directions perturbs many weights coherently, and a diagonal misses the coherence:
  on digits the OBD saliency (0.5 F w^2 of the removed consumer columns) was 10-70x below the
  measured loss for conv channels, and rank 1/2 of the classifier 3x below. The bits of a
  low-rank form are added on top, by the Fisher, as the error of its codes against the
  unquantised factors.

Damage is additive over layers and knobs: the integer program of the warm start needs that,
and the cross terms are what the measured trials correct.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bitprism.compression.apply import CompressedLayer, compress_layer
from bitprism.compression.structured import PruneGroup, kept_units
from bitprism.sensitivity.fisher import fisher_diagonal
from bitprism.sensitivity.loss import distillation_loss
from bitprism.spaces.candidate import LayerChoice
from bitprism.spaces.layer import LayerInfo
from bitprism.spaces.space import SearchSpace
from bitprism.workloads.base import Inputs

# Bump when how damage is predicted changes: cached tables of older versions are not reused.
DAMAGE_VERSION = "2"  # 2: tables carry each layer's curvature per weight


@dataclass(frozen=True)
class Structure:
    """The structured-pruning groups and their units ranked (none: the space offers no keep)."""

    groups: Sequence[PruneGroup] = ()
    order: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class DamageTable:
    """Omega per offered form of every layer and per offered keep of every group leader, and
    each layer's curvature per weight (its Fisher diagonal's mean: the Tr(H)/n of
    ``bitprism sensitivity``, which the dashboard shows beside a trial's choices)."""

    forms: Mapping[str, Mapping[LayerChoice, float]]
    keeps: Mapping[str, Mapping[float, float]]
    curvature: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the store's cache."""
        return {
            "forms": {
                name: [[dataclasses.asdict(form), value] for form, value in values.items()]
                for name, values in self.forms.items()
            },
            "keeps": {
                name: [[keep, value] for keep, value in values.items()]
                for name, values in self.keeps.items()
            },
            "curvature": dict(self.curvature),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DamageTable:
        return cls(
            forms={
                name: {LayerChoice(**form): float(value) for form, value in values}
                for name, values in data["forms"].items()
            },
            keeps={
                name: {float(keep): float(value) for keep, value in values}
                for name, values in data["keeps"].items()
            },
            curvature={name: float(v) for name, v in data.get("curvature", {}).items()},
        )


def offered_forms(space: SearchSpace, layer: str) -> list[LayerChoice]:
    """Every combination of the non-structured knobs ``space`` offers ``layer`` (keep = 1)."""
    return [
        LayerChoice(weight_bits=int(bits), sparsity=float(sparsity), rank_fraction=float(rank))
        for bits in space.values(layer, "weight_bits")
        for sparsity in space.values(layer, "sparsity")
        for rank in space.values(layer, "rank_fraction")
    ]


def predicted_damage(
    model: nn.Module,
    space: SearchSpace,
    fisher: Mapping[str, torch.Tensor],
    batches: Sequence[Inputs],
    structure: Structure = Structure(),
    on_step: Callable[[int, int], None] | None = None,
) -> DamageTable:
    """Omega of every form and keep fraction ``space`` offers on ``model`` (as evaluated: the
    BatchNorm-folded model the job compresses): ``fisher`` is its per-weight curvature,
    ``batches`` the calibration batches the measured parts are taken on (those ``fisher`` was
    taken on). ``on_step(done, total)`` reports the measured forward passes."""
    loss = distillation_loss(model, batches)
    measured: list[tuple[str, LayerChoice]] = [
        (layer.name, LayerChoice(rank_fraction=float(r)))
        for layer in space.layers
        for r in space.values(layer.name, "rank_fraction")
        if r < 1.0
    ]
    leaders = {g.leader for g in structure.groups}
    measured += [
        (layer.name, LayerChoice(keep=float(k)))
        for layer in space.layers
        if layer.name in leaders
        for k in space.values(layer.name, "keep")
        if k < 1.0
    ]
    found: dict[tuple[str, LayerChoice], float] = {}
    infos = {layer.name: layer for layer in space.layers}
    for step, (name, choice) in enumerate(measured):
        with _changed(model, infos[name], choice, structure), torch.no_grad():
            found[name, choice] = sum(float(loss(model, batch)) for batch in batches)
        if on_step is not None:
            on_step(step + 1, len(measured))
    forms: dict[str, dict[LayerChoice, float]] = {}
    for layer in space.layers:
        weight = model.get_submodule(layer.name).get_parameter("weight").detach()
        curvature = fisher[layer.name].double()
        forms[layer.name] = {
            form: _form_damage(layer, weight, curvature, form)
            + found.get((layer.name, LayerChoice(rank_fraction=form.rank_fraction)), 0.0)
            for form in offered_forms(space, layer.name)
        }
    merged: dict[str, dict[float, float]] = {}
    for (name, choice), value in found.items():
        if choice.keep < 1.0:
            merged.setdefault(name, {1.0: 0.0})[choice.keep] = value
    per_weight = {layer.name: float(fisher[layer.name].double().mean()) for layer in space.layers}
    return DamageTable(forms, merged, per_weight)


@contextmanager
def _changed(
    model: nn.Module, layer: LayerInfo, choice: LayerChoice, structure: Structure
) -> Iterator[None]:
    """``model`` with one change made in place, undone on exit: a low rank's product as the
    layer's weight (what its two factors compute), or the consumer columns that read a
    group's removed units zeroed (what removing the units computes: they feed nothing else).
    In place, not on a pruned copy: no copy of a large model and no dependency graph per
    measurement."""
    changes: list[tuple[nn.Parameter, torch.Tensor]] = []  # (weight, its new value)
    if choice.keep < 1.0:
        group = next(g for g in structure.groups if g.leader == layer.name)
        removed = structure.order[group.leader][kept_units(group.units, choice.keep) :]
        for name in group.consumers:
            weight = model.get_submodule(name).get_parameter("weight")
            width = weight.shape[1] // group.units  # a unit's block of consumer inputs
            columns = torch.tensor([u * width + j for u in removed for j in range(width)])
            zeroed = weight.detach().clone()
            zeroed[:, columns] = 0.0
            changes.append((weight, zeroed))
    else:
        weight = model.get_submodule(layer.name).get_parameter("weight")
        factors = compress_layer(layer, weight, None, choice)
        changes.append((weight, _effective(factors).reshape(weight.shape).to(weight.dtype)))
    saved = [weight.detach().clone() for weight, _ in changes]
    try:
        with torch.no_grad():
            for weight, value in changes:
                weight.copy_(value)
        yield
    finally:
        with torch.no_grad():
            for (weight, _), original in zip(changes, saved, strict=True):
                weight.copy_(original)


def _form_damage(
    layer: LayerInfo, weight: torch.Tensor, curvature: torch.Tensor, form: LayerChoice
) -> float:
    """0.5 sum F delta^2 of the form's sparsity and codes, against the unquantised (maybe
    low-rank) weight they compress: a low rank's own damage is measured apart."""
    if dataclasses.replace(form, rank_fraction=1.0).is_identity:
        return 0.0
    exact = _effective(
        compress_layer(layer, weight, None, LayerChoice(rank_fraction=form.rank_fraction))
    )
    coded = _effective(compress_layer(layer, weight, None, form))
    delta = (exact - coded).reshape(weight.shape)
    return 0.5 * float((curvature * delta.square()).sum())


def _effective(compressed: CompressedLayer) -> torch.Tensor:
    """The weight a compressed layer multiplies by (low rank: y = x f0^T f1^T, W' = f1 @ f0)."""
    effective = compressed.factors[0].weight.double()
    for factor in compressed.factors[1:]:
        effective = factor.weight.double() @ effective
    return effective


def measure_damage(
    model: nn.Module,
    space: SearchSpace,
    batches: Sequence[Inputs],
    structure: Structure = Structure(),
    on_step: Callable[[str, int, int], None] | None = None,
) -> DamageTable:
    """The Fisher diagonal on ``batches``, then the predicted damage of every offered choice.

    ``on_step(stage, done, total)`` reports progress ("fisher" per sample, "measure" per
    forward pass).
    """
    fisher = fisher_diagonal(
        model,
        [layer.name for layer in space.layers],
        batches,
        on_sample=None if on_step is None else lambda k, n: on_step("fisher", k, n),
    )
    return predicted_damage(
        model,
        space,
        fisher,
        batches,
        structure,
        on_step=None if on_step is None else lambda k, n: on_step("measure", k, n),
    )
