"""Hutchinson Hessian traces against the exact Hessian, on a tiny MLP and the real digits CNN."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from bitprism.sensitivity.hessian import hessian_traces
from bitprism.sensitivity.loss import distillation_loss
from bitprism.spaces.layer import discover_layers


def _tiny() -> tuple[nn.Module, nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    shifted = copy.deepcopy(model)  # a reference away from the model: residuals are not zero
    with torch.no_grad():
        for param in shifted.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return model.eval(), shifted.eval(), [torch.randn(32, 6)]


def _exact_trace(model: nn.Module, name: str, loss, batch) -> float:  # type: ignore[no-untyped-def]
    weight = model.get_submodule(name).weight
    original = weight.detach().clone()

    def of(flat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            weight.copy_(original)
        module = model.get_submodule(name)
        del module.weight
        module.weight = flat.view_as(original)  # type: ignore[assignment]
        value = loss(model, batch)
        module.weight = nn.Parameter(original.clone())
        return value

    hessian = torch.autograd.functional.hessian(of, original.reshape(-1))
    return float(torch.diagonal(hessian).sum())


def test_hutchinson_is_within_10pct_of_the_exact_trace() -> None:
    model, reference, batches = _tiny()
    loss = distillation_loss(reference, batches)
    names = ["0", "2", "4"]
    estimated = hessian_traces(model, names, batches, loss, max_probes=2000, target_rel_se=0.01)
    for name in names:
        exact = _exact_trace(copy.deepcopy(model), name, loss, batches[0])
        assert estimated[name].trace == pytest.approx(exact, rel=0.10), name
        assert estimated[name].rel_se < 0.05


def test_one_hessian_vector_product_per_probe_serves_every_layer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model, reference, batches = _tiny()
    calls = []
    original = torch.autograd.grad

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs.get("create_graph", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counted)
    found = hessian_traces(
        model,
        ["0", "2", "4"],
        batches,
        distillation_loss(reference, batches),
        min_probes=5,
        max_probes=5,
    )
    # Per probe: one gradient (with graph) and one double backward, for all three layers.
    assert calls == [True, False] * 5
    assert {t.probes for t in found.values()} == {5}


def test_the_model_is_left_as_it_was(digits) -> None:  # type: ignore[no-untyped-def]
    model = digits.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    batches = digits.calibration[:1]
    names = [layer.name for layer in discover_layers(model)]
    traces = hessian_traces(model, names, batches, distillation_loss(model, batches), max_probes=8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == flags
    # At the fp32 weights the distillation Hessian is J^T J: every trace is positive.
    assert all(t.trace > 0 for t in traces.values())


def test_distillation_loss_is_zero_at_the_reference_and_refuses_other_batches() -> None:
    model, _, batches = _tiny()
    loss = distillation_loss(model, batches)
    assert float(loss(model, batches[0]).detach()) == 0.0
    with pytest.raises(ValueError, match="not built with"):
        loss(model, torch.randn(32, 6))


def test_the_sensitivity_command_ranks_every_digits_layer(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from bitprism.cli import app

    png = tmp_path / "plots" / "digits.png"
    done = CliRunner().invoke(
        app,
        ["sensitivity", "--workload", "digits-cnn", "--probes", "16", "--json", "--plot", str(png)],
    )
    assert done.exit_code == 0, done.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    rows = json.loads(done.output)
    assert [r["layer"] for r in rows] == ["features.0", "features.2", "head.1", "head.3", "head.5"]
    assert all(r["trace"] > 0 and 2 <= r["probes"] <= 16 and r["se_pct"] > 0 for r in rows)
    for r in rows:  # two estimators of one trace: agree within a few standard errors
        assert abs(r["fisher"] - r["trace"]) <= max(0.3, 4 * r["se_pct"] / 100) * r["trace"]
    per_weight = {r["layer"]: r["per_weight"] for r in rows}
    # The 1,280-weight classifier moves the logits most per weight; the 262k-weight hidden
    # layer least: the ranking a blind search ignores.
    assert max(per_weight, key=per_weight.get) == "head.5"  # type: ignore[arg-type]
    assert min(per_weight, key=per_weight.get) == "head.1"  # type: ignore[arg-type]
    bad = CliRunner().invoke(app, ["sensitivity", "--workload", "digits-cnn", "--probes", "1"])
    assert bad.exit_code == 2 and "--probes must be at least 2" in bad.output
    jpeg = tmp_path / "digits.jpg"
    wrong = CliRunner().invoke(
        app, ["sensitivity", "--workload", "digits-cnn", "--plot", str(jpeg)]
    )
    assert wrong.exit_code == 2 and "must end in .png" in wrong.output and not jpeg.exists()
