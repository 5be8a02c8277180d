"""Calibration statistics for the data-aware compression methods, measured on the model a
candidate is compressed from.

- **Input Gram matrix** E[x x^T] of each layer's input, by forward hooks over the calibration
  batches: GPTQ and OBS minimise the layer's output error, whose Hessian it is. For a
  convolution x is each unfolded patch, in the weight's (channel, kh, kw) order. Grouped
  convolutions (depthwise) get none: their rows see different inputs, so there is no one
  matrix to compensate through. Every position counts, padding tokens included (a hook does
  not see the attention mask); they are a minority of MiniLM's calibration tokens.
- **Fisher diagonal** (:func:`bitprism.sensitivity.fisher.fisher_diagonal`) on the first
  :data:`FISHER_BATCHES` batches, for Fisher-weighted SVD.

Only what the candidate's choices use is measured: a job with the plain methods measures
nothing, and the Fisher (a backward pass per sample) only when a layer takes a low rank.

A worker remembers what it measured for the last :data:`MEMO_MODELS` source models (by the
caller's key): every unpruned candidate of a job is compressed from the same model, and
measuring its Gram matrices again took 6 of a MiniLM trial's 8 seconds. A layer's statistic
does not depend on which other layers are measured with it, so a remembered one is the same
tensor a fresh measurement gives, and a rebuilt file stays byte for byte the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from bitprism.compression.apply import methods_used
from bitprism.compression.methods import LayerStats, Stat, needed
from bitprism.config import Methods
from bitprism.sensitivity.fisher import fisher_diagonal
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import LayerInfo
from bitprism.workloads.base import Inputs, as_tuple

FISHER_BATCHES = 2
MEMO_MODELS = 2  # source models remembered per process (MiniLM's Gram matrices: ~150 MB)

Measured = dict[tuple[str, Stat], torch.Tensor | None]  # (layer, stat) -> tensor; None: has none
_memo: OrderedDict[str, Measured] = OrderedDict()


def candidate_stats(
    model: nn.Module,
    layers: Sequence[LayerInfo],
    candidate: Candidate,
    methods: Methods,
    batches: Sequence[Inputs],
    key: str | None = None,
) -> dict[str, LayerStats]:
    """The statistics each layer of ``candidate`` needs for ``methods``, measured on ``model``
    (the fp32 model it is compressed from, pruned if units were removed). ``key`` names the
    model and ``batches`` for the process's memo (None: measure everything afresh)."""
    needs = {layer.name: needed(methods, methods_used(candidate[layer.name])) for layer in layers}
    wanted = {name: stats for name, stats in needs.items() if stats}
    if not wanted:
        return {}
    if not batches:
        raise ValueError(
            f"the compression methods ({methods}) need calibration batches; the workload has none"
        )
    known = _remembered(key)
    grams = [
        n for n, s in wanted.items() if Stat.INPUT_GRAM in s and (n, Stat.INPUT_GRAM) not in known
    ]
    if grams:
        measured = input_grams(model, grams, batches)
        known.update({(n, Stat.INPUT_GRAM): measured.get(n) for n in grams})
    fisher = [n for n, s in wanted.items() if Stat.FISHER in s and (n, Stat.FISHER) not in known]
    if fisher:
        measured = fisher_diagonal(model, fisher, batches[:FISHER_BATCHES])
        known.update({(n, Stat.FISHER): measured.get(n) for n in fisher})
    return {
        name: LayerStats(
            input_gram=known[(name, Stat.INPUT_GRAM)] if Stat.INPUT_GRAM in stats else None,
            fisher=known[(name, Stat.FISHER)] if Stat.FISHER in stats else None,
        )
        for name, stats in wanted.items()
    }


def _remembered(key: str | None) -> Measured:
    """The statistics already measured under ``key`` (most recently used last; the oldest
    model beyond :data:`MEMO_MODELS` forgotten), or a fresh dict for no key."""
    if key is None:
        return {}
    known = _memo.pop(key, {})
    _memo[key] = known
    while len(_memo) > MEMO_MODELS:
        _memo.popitem(last=False)
    return known


def input_grams(
    model: nn.Module, layers: Sequence[str], batches: Sequence[Inputs]
) -> dict[str, torch.Tensor]:
    """E[x x^T] (float64) of each Linear's and ungrouped Conv2d's input over ``batches``."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []
    for name in layers:
        module = model.get_submodule(name)
        if isinstance(module, nn.Conv2d) and (
            module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str)
        ):
            continue
        if not isinstance(module, nn.Linear | nn.Conv2d):
            continue

        def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], key: str = name) -> None:
            rows = _input_rows(mod, args[0]).double()
            sums[key] = sums.get(key, 0) + rows.T @ rows
            counts[key] = counts.get(key, 0) + rows.shape[0]

        handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for batch in batches:
                model(*as_tuple(batch))
    finally:
        for handle in handles:
            handle.remove()
    return {name: total / counts[name] for name, total in sums.items()}


def _input_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows its weight rows multiply: (positions, in)."""
    if isinstance(module, nn.Conv2d):
        patches = nn.functional.unfold(
            x,
            module.kernel_size,
            dilation=module.dilation,
            padding=module.padding,  # type: ignore[arg-type]  # never a str here
            stride=module.stride,
        )
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.reshape(-1, x.shape[-1])
