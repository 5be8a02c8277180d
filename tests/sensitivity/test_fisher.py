"""The Monte Carlo Fisher diagonal against the exact Gauss-Newton diagonal and Hutchinson."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bitprism.sensitivity.fisher import fisher_diagonal
from bitprism.sensitivity.hessian import hessian_traces
from bitprism.sensitivity.loss import distillation_loss


def _tiny() -> tuple[nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    return model.eval(), [torch.randn(16, 6), torch.randn(8, 6)]


def _exact_gauss_newton_diagonal(model: nn.Module, name: str, batches) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """sum over batches of (1/N) sum_s diag(J_s^T J_s), from full per-sample Jacobians."""
    module = model.get_submodule(name)
    original = module.weight.detach().clone()
    total = torch.zeros_like(original, dtype=torch.float64)
    for batch in batches:
        for x in batch:

            def out(flat: torch.Tensor, x: torch.Tensor = x) -> torch.Tensor:
                del module.weight
                module.weight = flat.view_as(original)  # type: ignore[assignment]
                value = model(x[None])[0]
                module.weight = nn.Parameter(original.clone())
                return value

            jac = torch.autograd.functional.jacobian(out, original.reshape(-1))  # (outputs, n)
            total += jac.double().square().sum(0).view_as(original) / batch.shape[0]
    return total.float()


def test_fisher_matches_the_exact_gauss_newton_diagonal() -> None:
    model, batches = _tiny()
    found = fisher_diagonal(model, ["0", "4"], batches, draws=400)
    for name in ["0", "4"]:
        exact = _exact_gauss_newton_diagonal(model, name, batches)
        assert found[name].shape == exact.shape
        assert float(found[name].sum()) == pytest.approx(float(exact.sum()), rel=0.05)
        # per weight, within the Monte Carlo noise of 400 draws x 24 samples
        assert torch.allclose(found[name], exact, rtol=0.25, atol=1e-3 * float(exact.max()))


def test_fisher_sums_to_the_hutchinson_trace_at_the_reference() -> None:
    model, batches = _tiny()
    names = ["0", "2", "4"]
    fisher = fisher_diagonal(model, names, batches, draws=200)
    traces = hessian_traces(
        model,
        names,
        batches,
        distillation_loss(model, batches),
        max_probes=2000,
        target_rel_se=0.01,
    )
    for name in names:
        assert float(fisher[name].sum()) == pytest.approx(traces[name].trace, rel=0.08), name


def test_fisher_leaves_the_model_as_it_was() -> None:
    model, batches = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    seen = []
    fisher_diagonal(model, ["2"], batches, on_sample=lambda k, n: seen.append((k, n)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert seen[-1] == (24, 24) and len(seen) == 24
    with pytest.raises(ValueError, match="draws"):
        fisher_diagonal(model, ["2"], batches, draws=0)
