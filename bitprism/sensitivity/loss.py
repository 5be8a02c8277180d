"""The loss sensitivities are measured on: the workload's own, else distillation to fp32.

Distillation (half the squared distance of every output from the fp32 model's, summed over
elements and averaged over samples) needs no labels, so it works for any model, MiniLM's
embedding tables included. At the fp32 weights its gradient is zero and its Hessian is the
Gauss-Newton matrix J^T J: exactly the curvature that says how far a perturbed weight moves
the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from bitprism.workloads.base import Inputs, as_tuple, flat_outputs

# loss(model, batch) -> a scalar tensor, differentiable in the model's weights
Loss = Callable[[nn.Module, Inputs], torch.Tensor]


def distillation_loss(reference: nn.Module, batches: Sequence[Inputs]) -> Loss:
    """A loss comparing a model's outputs on each of ``batches`` with ``reference``'s.

    The reference outputs are computed once, here; the returned loss accepts only those
    batches (by identity), so a mismatch is an error rather than a silent comparison of
    unrelated outputs.
    """
    with torch.no_grad():
        targets = {
            id(b): [t.detach() for t in flat_outputs(reference(*as_tuple(b)))] for b in batches
        }

    def loss(model: nn.Module, batch: Inputs) -> torch.Tensor:
        wanted = targets.get(id(batch))
        if wanted is None:
            raise ValueError("distillation_loss: a batch it was not built with")
        outputs = flat_outputs(model(*as_tuple(batch)))
        samples = as_tuple(batch)[0].shape[0]
        total = torch.stack(
            [((o.float() - t.float()) ** 2).sum() for o, t in zip(outputs, wanted, strict=True)]
        ).sum()
        return 0.5 * total / samples

    return loss
