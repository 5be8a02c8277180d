"""Predicted damage against the measured loss of each single choice on the real digits CNN."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from scipy.stats import spearmanr

from bitprism.compression.apply import compress_model
from bitprism.compression.fold import fold_batchnorm
from bitprism.compression.structured import find_groups, prune_model, unit_order
from bitprism.kernels.base import get_backend
from bitprism.sensitivity.damage import DamageTable, Structure, offered_forms, predicted_damage
from bitprism.sensitivity.fisher import fisher_diagonal
from bitprism.sensitivity.loss import distillation_loss
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import discover_layers
from bitprism.spaces.space import build_space


def test_predicted_damage_ranks_single_choices_as_measured(digits) -> None:  # type: ignore[no-untyped-def]
    model, _ = fold_batchnorm(digits.model)
    found = discover_layers(model)
    groups, _ = find_groups(model, digits.example_inputs, found)
    units = {g.leader: g.units for g in groups}
    layers = tuple(dataclasses.replace(x, prune_units=units.get(x.name, 0)) for x in found)
    space = build_space(layers, get_backend("ort-cpu"))
    structure = Structure(groups, unit_order(model, groups, digits.calibration))
    batches = list(digits.calibration[:2])
    fisher = fisher_diagonal(model, [x.name for x in layers], batches)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    table = predicted_damage(
        model, space, fisher, batches, structure, on_step=lambda k, n: steps.append((k, n))
    )
    loss = distillation_loss(model, batches)
    # Each layer's curvature per weight travels with the table (and through the store's cache).
    assert table.curvature == {x.name: pytest.approx(float(fisher[x.name].mean())) for x in layers}
    assert DamageTable.from_dict(table.to_dict()).curvature == pytest.approx(table.curvature)

    def measured(candidate: Candidate) -> float:
        changed = prune_model(model, groups, structure.order, candidate, digits.example_inputs)
        changed, _ = compress_model(changed, layers, candidate)
        with torch.no_grad():
            return sum(float(loss(changed, b)) for b in batches)

    predicted, actual = [], []
    for layer in layers:
        for form in offered_forms(space, layer.name):
            if not form.is_identity:
                predicted.append(table.forms[layer.name][form])
                actual.append(measured(Candidate.from_dict({layer.name: form})))
                if form.rank_fraction == 1.0 and form.weight_bits == 4:  # the diagonal's regime
                    assert predicted[-1] == pytest.approx(actual[-1], rel=0.3), (layer.name, form)
                elif form.rank_fraction == 1.0 and form.weight_bits >= 7:
                    # Damage ~1e-3, where the cross-terms the diagonal leaves out weigh as much:
                    # measured 0.45x to 1.6x on digits models trained on two CPU kinds.
                    ratio = predicted[-1] / actual[-1]
                    assert 1 / 3 < ratio < 3, (layer.name, form, ratio)
        for keep, omega in table.keeps.get(layer.name, {}).items():
            predicted.append(omega)
            actual.append(measured(Candidate.from_dict({layer.name: LayerChoice(keep=keep)})))
            # measured in place by zeroing what reads the removed units: what pruning computes
            assert omega == pytest.approx(actual[-1], rel=1e-3, abs=1e-9), (layer.name, keep)
    assert len(predicted) > 40
    assert spearmanr(predicted, actual).statistic > 0.9
    assert steps and steps[-1][0] == steps[-1][1]  # every measured choice reported
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # restored
