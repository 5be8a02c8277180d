"""Model fingerprints: equal for the same graph and weights, in any process; else different."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bitprism.workloads.digits import DigitsCNN
from bitprism.workloads.fingerprint import model_fingerprint

_REPO = Path(__file__).resolve().parents[2]
_IMAGES = torch.zeros(4, 1, 8, 8)


def _seeded(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return DigitsCNN().eval()


@pytest.fixture()
def model() -> nn.Module:
    return _seeded()


def test_same_model_and_deep_copy_give_the_same_digest(model: nn.Module) -> None:
    digest = model_fingerprint(model, _IMAGES)

    assert len(digest) == 64 and int(digest, 16) >= 0
    assert model_fingerprint(model, _IMAGES) == digest
    assert model_fingerprint(copy.deepcopy(model), _IMAGES) == digest
    assert model_fingerprint(_seeded(), _IMAGES) == digest


def test_a_tiny_weight_change_changes_the_digest(model: nn.Module) -> None:
    digest = model_fingerprint(model, _IMAGES)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.get_parameter("head.1.weight")[3, 5] += 1e-6

    assert model_fingerprint(edited, _IMAGES) != digest


def test_other_weights_or_dtype_change_the_digest(model: nn.Module) -> None:
    digest = model_fingerprint(model, _IMAGES)
    retrained = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(retrained.parameters(), lr=0.1)
    nn.functional.cross_entropy(retrained(_IMAGES + 0.5), torch.arange(4)).backward()
    optimizer.step()
    bf16 = copy.deepcopy(model).to(torch.bfloat16)

    assert model_fingerprint(_seeded(1), _IMAGES) != digest
    assert model_fingerprint(retrained.eval(), _IMAGES) != digest
    assert model_fingerprint(bf16, _IMAGES) != digest
    assert model_fingerprint(bf16, _IMAGES) == model_fingerprint(copy.deepcopy(bf16), _IMAGES)


def test_input_shape_and_dtype_count_but_batch_size_does_not(model: nn.Module) -> None:
    digest = model_fingerprint(model, _IMAGES)

    assert model_fingerprint(model, torch.zeros(1, 1, 8, 8)) == digest
    assert model_fingerprint(model, torch.zeros(4, 1, 16, 16)) != digest
    assert model_fingerprint(model, _IMAGES.double()) != digest
    assert model_fingerprint(model, (_IMAGES, _IMAGES)) != digest


def test_digest_is_the_same_in_another_process(model: nn.Module) -> None:
    script = (
        "from tests.workloads.test_fingerprint import _IMAGES, _seeded\n"
        "from bitprism.workloads.fingerprint import model_fingerprint\n"
        "print(model_fingerprint(_seeded(), _IMAGES))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=_REPO, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == model_fingerprint(model, _IMAGES)


def test_data_fingerprint_follows_the_values_and_shapes() -> None:
    from bitprism.workloads.fingerprint import data_fingerprint

    batches = [
        torch.arange(12.0).view(3, 4),
        (torch.ones(2, 5), torch.zeros(2, 5, dtype=torch.long)),
    ]
    same = [
        t.clone() if isinstance(t, torch.Tensor) else tuple(x.clone() for x in t) for t in batches
    ]
    assert data_fingerprint(batches) == data_fingerprint(same)
    changed = [batches[0] + 1e-3, batches[1]]
    assert data_fingerprint(changed) != data_fingerprint(batches)
    assert data_fingerprint([batches[0].view(4, 3)]) != data_fingerprint(batches[:1])
