"""BatchNorm folding on small CNNs trained on digits: same outputs, names, no BN in the export."""

from __future__ import annotations

import onnx
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bitprism.compression.fold import fold_batchnorm
from bitprism.kernels.onnx_export import export_base
from bitprism.workloads.base import Workload


class ConvBlock(nn.Module):
    """Conv + BatchNorm + ReLU written as forward code, not as an nn.Sequential."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class BatchNormCNN(nn.Module):
    """Two Sequential conv blocks, one custom block, and a Linear + BatchNorm1d head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.block = ConvBlock(16)
        self.head = nn.Sequential(
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Linear(32, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.features(x)))


class Untraceable(BatchNormCNN):
    """Data-dependent control flow: torch.fx cannot trace it, so only Sequentials fold."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.features(x)
        if hidden.sum() > 0:
            hidden = self.block(hidden)
        return self.head(hidden)


class SharedOutput(nn.Module):
    """The conv's output feeds its BatchNorm and a residual add: folding would change the add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return (self.bn(y) + y).flatten(1)


class CalledTwice(nn.Module):
    """One conv module applied twice, once before the BatchNorm: folding would alter both."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(self.conv(x))).flatten(1)


@pytest.fixture(scope="module")
def digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(data.target)


def _trained(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    """A few training steps so BatchNorm running statistics and affine weights are not trivial."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for x, y in zip(images[:1600].split(64), labels[:1600].split(64), strict=True):
        out = model(x)
        loss = nn.functional.cross_entropy(out, y) if out.shape[1] == 10 else out.square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _batchnorms(model: nn.Module) -> list[str]:
    """Qualified names of the model's BatchNorm modules."""
    return [name for name, m in model.named_modules() if isinstance(m, _BatchNorm)]


@pytest.fixture(scope="module")
def trained_cnn(digits_images: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    torch.manual_seed(0)
    return _trained(BatchNormCNN(), *digits_images)


def test_folds_sequential_custom_and_linear_pairs_with_equal_outputs(
    trained_cnn: nn.Module, digits_images: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images = digits_images[0][1600:]
    before = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    assert trained_cnn.get_buffer("features.1.running_mean").abs().max() > 0.01  # learnt

    folded, notes = fold_batchnorm(trained_cnn)

    assert notes == [
        "folded features.1 into features.0",
        "folded features.4 into features.3",
        "folded block.bn into block.conv",
        "folded head.3 into head.2",
    ]
    with torch.no_grad():
        torch.testing.assert_close(folded(images), trained_cnn(images), atol=1e-5, rtol=1e-5)
    assert type(folded) is BatchNormCNN and type(folded.block) is ConvBlock
    assert _batchnorms(folded) == []
    for name in ("features.1", "features.4", "block.bn", "head.3"):
        assert isinstance(folded.get_submodule(name), nn.Identity)
    assert {"features.0.bias", "block.conv.weight", "block.conv.bias", "head.2.weight"} <= set(
        folded.state_dict()
    )
    assert _batchnorms(trained_cnn) == ["features.1", "features.4", "block.bn", "head.3"]
    after = trained_cnn.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_untraceable_model_folds_only_sequential_pairs(
    digits_images: tuple[torch.Tensor, torch.Tensor],
) -> None:
    torch.manual_seed(0)
    model = _trained(Untraceable(), *digits_images)
    images = digits_images[0][1600:]

    folded, notes = fold_batchnorm(model)

    assert notes[0].startswith("torch.fx cannot trace the model")
    assert notes[1:] == [
        "folded features.1 into features.0",
        "folded features.4 into features.3",
        "folded head.3 into head.2",
    ]
    assert _batchnorms(folded) == ["block.bn"]
    with torch.no_grad():
        torch.testing.assert_close(folded(images), model(images), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_class", [SharedOutput, CalledTwice])
def test_layer_with_other_uses_is_not_folded(
    model_class: type[nn.Module], digits_images: tuple[torch.Tensor, torch.Tensor]
) -> None:
    torch.manual_seed(0)
    model = _trained(model_class(), *digits_images)
    images = digits_images[0][1600:]

    folded, notes = fold_batchnorm(model)

    assert notes == []
    assert folded is not model and _batchnorms(folded) == ["bn"]
    with torch.no_grad():
        torch.testing.assert_close(folded(images), model(images), atol=0, rtol=0)


def test_folded_export_has_no_batchnorm_node(
    trained_cnn: nn.Module, digits_images: tuple[torch.Tensor, torch.Tensor]
) -> None:
    folded, _ = fold_batchnorm(trained_cnn)
    example = digits_images[0][:2]

    def op_types(model: nn.Module) -> set[str]:
        workload = Workload("bn-cnn", model, lambda m: 0.0, example)
        graph = onnx.load_model_from_string(export_base(workload)).graph
        return {node.op_type for node in graph.node}

    assert "BatchNormalization" in op_types(trained_cnn)
    folded_ops = op_types(folded)
    assert "BatchNormalization" not in folded_ops
    assert "Conv" in folded_ops
