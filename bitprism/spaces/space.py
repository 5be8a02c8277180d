"""SearchSpace = layers x knobs, restricted by the backend and the user's overrides.

The Optuna distributions are derived from here, so the driver never lists choices itself.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from bitprism.spaces.candidate import OFF_BITS, Candidate, LayerChoice
from bitprism.spaces.knobs import KNOBS, Value
from bitprism.spaces.layer import LayerInfo, LayerKind
from bitprism.spaces.offer import Offers

Overrides = Mapping[str, Mapping[str, Sequence[Value]]]


@dataclass(frozen=True)
class SearchSpace:
    """Per-layer, per-knob tuples of allowed values (first value = leave as is)."""

    layers: tuple[LayerInfo, ...]
    choices: tuple[tuple[str, tuple[tuple[str, tuple[Value, ...]], ...]], ...]

    def values(self, layer: str, knob: str) -> tuple[Value, ...]:
        for name, knobs in self.choices:
            if name == layer:
                return dict(knobs)[knob]
        raise KeyError(layer)

    def distributions(self) -> dict[str, BaseDistribution]:
        """One categorical distribution per (layer, knob) that has more than one value."""
        dists: dict[str, BaseDistribution] = {}
        for layer, knobs in self.choices:
            for knob, values in knobs:
                if len(values) > 1:
                    dists[param_name(layer, knob)] = CategoricalDistribution(values)
        return dists

    def candidate(self, params: Mapping[str, Any]) -> Candidate:
        """The candidate an Optuna trial's params describe (missing = the knob's only value)."""
        layers = {}
        for layer, knobs in self.choices:
            fields = {
                knob: params.get(param_name(layer, knob), values[0]) for knob, values in knobs
            }
            layers[layer] = LayerChoice(**fields)
        return Candidate.from_dict(layers)

    def params(self, candidate: Candidate) -> dict[str, Value]:
        """Inverse of :meth:`candidate`, for ``study.enqueue_trial``."""
        dists = self.distributions()
        out: dict[str, Value] = {}
        for layer, choice in candidate:
            for knob in KNOBS:
                key = param_name(layer, knob)
                if key in dists:
                    out[key] = getattr(choice, knob)
        return out

    def baseline(self) -> Candidate:
        """The uncompressed model as a candidate."""
        return Candidate.from_dict({layer.name: LayerChoice() for layer in self.layers})

    def uniform_seeds(self) -> list[Candidate]:
        """The forms a user would try by hand, so the search always measures them.

        One candidate per integer width class (8, 4, 2): every layer at the widest width it is
        offered within the class ("int8 everywhere" gives a layer whose backend runs 7-bit
        codes those), then one per structured keep fraction: every group pruned to it, with
        8-bit-class layers and 4-bit embedding tables where offered. Random starts rarely leave
        every other knob at its no-compression value.
        """
        classes = sorted({_width_class(int(b)) for b in self._offered("weight_bits")}, reverse=True)
        seeds = [self._uniform(dict.fromkeys(LayerKind, c)) for c in classes]
        pruned = {**dict.fromkeys(LayerKind, 8), LayerKind.EMBEDDING: 4}
        seeds += [self._uniform(pruned, keep=float(keep)) for keep in self._offered("keep")]
        return seeds

    def _uniform(self, width: Mapping[LayerKind, int], keep: float = 1.0) -> Candidate:
        """Every layer at the widest offered bits of its kind's width class (else fp32), and
        every group leader at ``keep`` where offered."""
        kinds = {layer.name: layer.kind for layer in self.layers}
        layers = {}
        for name, knobs in self.choices:
            offered = dict(knobs)
            target = width[kinds[name]]
            fits = [
                int(b)
                for b in offered["weight_bits"]
                if b != OFF_BITS and _width_class(int(b)) == target
            ]
            layers[name] = LayerChoice(
                weight_bits=max(fits, default=OFF_BITS),
                keep=keep if keep in offered["keep"] else 1.0,
            )
        return Candidate.from_dict(layers)

    def _offered(self, knob: str) -> list[Value]:
        """Every value of ``knob`` some layer offers besides no compression, largest first."""
        off = getattr(LayerChoice(), knob)
        values = {v for _, knobs in self.choices for k, vs in knobs if k == knob for v in vs}
        values.discard(off)
        return sorted(values, reverse=True)

    def size(self) -> int:
        """Number of distinct candidates."""
        total = 1
        for _layer, knobs in self.choices:
            for _knob, values in knobs:
                total *= len(values)
        return total

    def without(self, drops: Sequence[tuple[str, str, Value]]) -> SearchSpace:
        """This space with each (layer, knob, value) of ``drops`` removed; a knob's first value
        (no compression) always stays."""
        gone = set(drops)
        choices = tuple(
            (
                layer,
                tuple(
                    (
                        knob,
                        values[:1] + tuple(v for v in values[1:] if (layer, knob, v) not in gone),
                    )
                    for knob, values in knobs
                ),
            )
            for layer, knobs in self.choices
        )
        return SearchSpace(layers=self.layers, choices=choices)

    def restricted_to(self, stored: Mapping[str, Any]) -> SearchSpace | None:
        """This space narrowed to a stored one's choices (a job's, as :meth:`to_dict` wrote
        it), or None unless the stored space has the same layers and offers no value this one
        lacks: a resumed job searches what it started with."""
        if stored.get("layers") != [layer.to_dict() for layer in self.layers]:
            return None
        wanted = stored.get("choices", {})
        drops = []
        for layer, knobs in self.choices:
            for knob, values in knobs:
                kept = wanted.get(layer, {}).get(knob)
                if kept is None or not set(kept) <= set(values) or values[0] not in kept:
                    return None
                drops += [(layer, knob, v) for v in values if v not in kept]
        return self.without(drops)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "choices": {layer: {k: list(v) for k, v in knobs} for layer, knobs in self.choices},
        }


def param_name(layer: str, knob: str) -> str:
    """The Optuna parameter name of one knob of one layer."""
    return f"{layer}:{knob}"


def build_space(
    layers: Sequence[LayerInfo],
    backend: Offers,
    overrides: Overrides | None = None,
    extra_knobs: Sequence[str] = (),
) -> SearchSpace:
    """Offer each layer what the backend runs and gains from, then narrow by ``overrides``.

    A knob the backend gains nothing from (``backend.gains_from``) keeps its no-compression
    value unless it is named in ``extra_knobs``. Overrides map a layer name or glob
    (``"head.*"``) to ``{knob: [values]}``. Every pattern must match a layer and every value
    must be one the backend offers for it.

    Raises:
        ValueError: naming the override pattern, knob or value that is wrong.
    """
    overrides = overrides or {}
    for knob in extra_knobs:
        if knob not in KNOBS:
            raise ValueError(f"extra_knobs: unknown knob {knob!r}; knobs: {list(KNOBS)}")
    off = {f for f in KNOBS if not backend.gains_from(f) and f not in extra_knobs}
    names = [layer.name for layer in layers]
    for pattern in overrides:
        if not fnmatch.filter(names, pattern):
            raise ValueError(f"overrides[{pattern!r}] matches no layer; layers are {names}")
    choices = []
    for layer in layers:
        knobs = {field: knob.choices(layer, backend) for field, knob in KNOBS.items()}
        knobs = {field: values[:1] if field in off else values for field, values in knobs.items()}
        for pattern, restriction in overrides.items():
            if fnmatch.fnmatchcase(layer.name, pattern):
                knobs = _restrict(knobs, restriction, layer, pattern, off)
        choices.append((layer.name, tuple(knobs.items())))
    return SearchSpace(layers=tuple(layers), choices=tuple(choices))


def _restrict(
    knobs: dict[str, tuple[Value, ...]],
    restriction: Mapping[str, Sequence[Value]],
    layer: LayerInfo,
    pattern: str,
    off: set[str],
) -> dict[str, tuple[Value, ...]]:
    out = dict(knobs)
    for knob, wanted in restriction.items():
        if knob not in knobs:
            raise ValueError(f"overrides[{pattern!r}]: unknown knob {knob!r}; knobs: {list(KNOBS)}")
        bad = [v for v in wanted if v not in knobs[knob]]
        if bad or not wanted:
            raise ValueError(
                f"overrides[{pattern!r}].{knob}: {bad or 'empty list'} not available for layer "
                f"{layer.name!r} ({layer.kind.value}); allowed: {list(knobs[knob])}"
                + (
                    f"; {knob} is off because this backend gains neither bytes nor time from "
                    "it: name it in extra_knobs to search it anyway"
                    if knob in off
                    else ""
                )
            )
        out[knob] = tuple(v for v in knobs[knob] if v in wanted)
    return out


def _width_class(bits: int) -> int:
    """The class a weight width belongs to for seeding: 8 (7-8 bits), 4 (3-4) or 2."""
    return 8 if bits >= 7 else 4 if bits >= 3 else 2
