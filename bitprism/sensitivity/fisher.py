"""Per-weight Fisher diagonal of the distillation loss, from per-sample gradients.

The *empirical* Fisher (squared gradients at the observed targets) of a distillation loss is
identically zero at the fp32 weights: the targets are the model's own outputs. What measures
curvature there is the Fisher with targets drawn from the model's predictive distribution. For
the squared distance, y = f(x) + e with e ~ N(0, I) gives the per-sample gradient
J^T e, whose square has expectation diag(J^T J): the diagonal of the Gauss-Newton matrix, which
is the Hessian of the distillation loss at the fp32 weights. So, per weight,

    F_i = sum over batches of (1 / N_b) sum over samples s of (J_s^T e_s)_i^2,

and its sum over a layer estimates the same Tr(H) as Hutchinson (a test checks both). Summed
per weight, it gives what the trace cannot: which weights, rows and columns matter (for pruning
saliency and Fisher-weighted low rank).

Per-sample gradients are taken one sample at a time with ``torch.autograd.grad``, not with
``torch.func.vmap``: vmap fails on Hugging Face BERT's attention-mask code (measured on
MiniLM), and a batch-1 backward per sample is cheap at calibration sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from bitprism.sensitivity.grad import weight_gradients
from bitprism.workloads.base import Inputs, as_tuple, flat_outputs


def fisher_diagonal(
    model: nn.Module,
    layers: Sequence[str],
    batches: Sequence[Inputs],
    *,
    draws: int = 1,
    seed: int = 0,
    on_sample: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Monte Carlo Fisher diagonal of the distillation loss, per weight of each layer.

    ``draws`` noise vectors per sample (more: less variance). ``model`` is used in eval mode
    and left unchanged. ``on_sample(done, total)`` is called after each sample.
    """
    if not layers:
        raise ValueError("fisher_diagonal needs at least one layer")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    generator = torch.Generator().manual_seed(seed)
    total = sum(as_tuple(b)[0].shape[0] for b in batches)
    done = 0
    with weight_gradients(model, layers) as weights:
        fisher = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
        for batch in batches:
            inputs = as_tuple(batch)
            samples = inputs[0].shape[0]
            for s in range(samples):
                outputs = flat_outputs(model(*(t[s : s + 1] for t in inputs)))
                for _ in range(draws):
                    noise = [torch.randn(o.shape, generator=generator) for o in outputs]
                    projected = torch.stack(
                        [(o.float() * e).sum() for o, e in zip(outputs, noise, strict=True)]
                    ).sum()
                    grads = torch.autograd.grad(
                        projected,
                        weights,
                        retain_graph=True,
                        allow_unused=True,
                        materialize_grads=True,
                    )
                    for acc, grad in zip(fisher, grads, strict=True):
                        acc += grad.double().square() / (samples * draws)
                done += 1
                if on_sample is not None:
                    on_sample(done, total)
    return {name: f.float() for name, f in zip(layers, fisher, strict=True)}
