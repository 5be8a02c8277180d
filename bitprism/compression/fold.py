"""Fold BatchNorm into the layer before it, as every inference runtime does at load time.

Quantising a convolution and leaving its BatchNorm beside it measures a model nobody deploys:
the runtime cannot fuse BatchNormalization into ``ConvInteger``, so the int8 conv pays for a
separate normalisation pass. Folding first (in PyTorch, before compression) makes the
quantised weights the folded ones, exactly like a user's deployment flow.

Pairs are found with ``torch.fx`` when the model traces, else in ``nn.Sequential`` containers.
The folded copy keeps the user's module classes, forward code and layer names; only the
BatchNorm modules become ``nn.Identity``. torch's own ``fuse_modules`` needs the pairs named
by hand, and fx's ``optimization.fuse`` returns a GraphModule with new names, hence this.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch.fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

# Layer type -> (the BatchNorm type that may follow it, the torch function that folds the pair).
# Exact types: a subclass (a QAT conv, a weight-standardised conv) may change what forward
# does with the weight, and folding would then silently change the model.
_FOLDS: dict[type[nn.Module], tuple[type[_BatchNorm], Callable[[Any, Any], nn.Module]]] = {
    nn.Conv1d: (nn.BatchNorm1d, fuse_conv_bn_eval),
    nn.Conv2d: (nn.BatchNorm2d, fuse_conv_bn_eval),
    nn.Linear: (nn.BatchNorm1d, fuse_linear_bn_eval),
}


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """An eval-mode deep copy of ``model`` with each foldable BatchNorm folded into its layer.

    A BatchNorm folds when it directly follows a Conv1d, Conv2d or Linear whose output nothing
    else uses, both modules are called once and have one name, and the norm tracks running
    statistics. The folded layer keeps its qualified name; the norm becomes ``nn.Identity``.
    ``model`` itself is never modified. Known limit: a Linear applied to 3-D input ahead of a
    BatchNorm1d is folded as if its input were 2-D (fx does not see shapes).

    Returns:
        The copy, and one human-readable note per fold (or on why folding was limited).

    Example:
        >>> folded, notes = fold_batchnorm(net.eval())
        >>> notes
        ['folded features.1 into features.0']
    """
    notes = []
    pairs = _traced_pairs(model)
    if pairs is None:
        pairs = _sequential_pairs(model)
        if any(isinstance(m, _BatchNorm) for m in model.modules()):
            notes.append(
                "torch.fx cannot trace the model: only BatchNorm right after a layer inside an "
                "nn.Sequential is folded"
            )
    folded = copy.deepcopy(model).eval()
    for layer_name, norm_name in pairs:
        if not _compatible(model, layer_name, norm_name):
            continue
        layer = folded.get_submodule(layer_name)
        _, fuse = _FOLDS[type(layer)]
        _replace(folded, layer_name, fuse(layer, folded.get_submodule(norm_name)))
        _replace(folded, norm_name, nn.Identity())
        notes.append(f"folded {norm_name} into {layer_name}")
    return folded, notes


def _traced_pairs(model: nn.Module) -> list[tuple[str, str]] | None:
    """(layer, norm) module names where the layer's only user is the norm; None if untraceable.

    Modules called more than once or reachable under two names are left out: replacing them
    by name would change their other uses too, or miss the attribute the forward code reads.
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001  (any tracing failure means: use the fallback)
        return None
    calls = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
    single = {name for name, count in calls.items() if count == 1} - _aliased_names(model)
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.users) != 1:
            continue
        (user,) = node.users
        if user.op != "call_module" or user.args != (node,) or user.kwargs:
            continue
        if str(node.target) in single and str(user.target) in single:
            pairs.append((str(node.target), str(user.target)))
    return pairs


def _aliased_names(model: nn.Module) -> set[str]:
    """Qualified names of modules registered under more than one name."""
    named = list(model.named_modules(remove_duplicate=False))
    counts = Counter(id(module) for _, module in named)
    return {name for name, module in named if counts[id(module)] > 1}


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Adjacent (layer, norm) children of ``nn.Sequential`` containers."""
    pairs = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = [child for child, _ in module.named_children()]
        prefix = f"{name}." if name else ""
        for first, second in zip(children, children[1:], strict=False):
            pairs.append((prefix + first, prefix + second))
    return pairs


def _compatible(model: nn.Module, layer_name: str, norm_name: str) -> bool:
    """Whether the pair is a foldable layer followed by its kind of BatchNorm, with statistics."""
    layer = model.get_submodule(layer_name)
    norm = model.get_submodule(norm_name)
    norm_type, _ = _FOLDS.get(type(layer), (None, None))
    if type(norm) is not norm_type or not isinstance(norm, _BatchNorm):
        return False
    if norm.running_mean is None or norm.running_var is None:
        return False
    if isinstance(layer, nn.Linear):  # fuse_linear_bn_eval needs the norm's affine weights
        return norm.affine and norm.num_features == layer.out_features
    return norm.num_features == layer.out_channels


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    """Set the submodule at qualified ``name`` to ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
