"""The data-aware compression methods against the plain ones, at equal bytes, on a workload.

Every setting is applied uniformly (every Linear and Conv2d; low rank to every Linear but the
model's last, a classifier on the digits models, which no method can halve) and each pair is
scored with the workload's own metric on its own held-out data, in PyTorch (weights as the
file stores them; no runtime input quantisation, so only the methods differ). Calibration
statistics come from the workload's calibration batches, as in a job.

    .venv/bin/python benchmarks/compression_methods.py --workload digits-cnn
    .venv/bin/python benchmarks/compression_methods.py --workload minilm-stsb   # ~10 min

Prints a markdown table: setting, method, metric, and the seconds compressing took.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from bitprism.compression.apply import PLAIN, compress_model
from bitprism.compression.fold import fold_batchnorm
from bitprism.config import Methods
from bitprism.kernels.machine import cpu_flags
from bitprism.sensitivity.stats import candidate_stats
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import LayerInfo, LayerKind, discover_layers
from bitprism.workloads import Workload, resolve_workload

Choose = Callable[[LayerInfo, str], Mapping[str, Any]]


def _weights(choice: Mapping[str, Any]) -> Choose:
    def choose(layer: LayerInfo, last: str) -> Mapping[str, Any]:
        return choice if layer.kind in (LayerKind.LINEAR, LayerKind.CONV2D) else {}

    return choose


def _rank(fraction: float) -> Choose:
    def choose(layer: LayerInfo, last: str) -> Mapping[str, Any]:
        useful = layer.kind is LayerKind.LINEAR and layer.name != last
        return {"rank_fraction": fraction} if useful else {}

    return choose


def _with(**names: str) -> Methods:
    """The plain methods but for ``names``: each pair differs in one method only."""
    return Methods(**{**PLAIN.model_dump(), **names})


SETTINGS: list[tuple[str, Choose, list[Methods]]] = [
    *(
        (f"int{bits}", _weights({"weight_bits": bits}), [PLAIN, _with(quantiser="gptq")])
        for bits in (4, 3, 2)
    ),
    ("50% sparse", _weights({"sparsity": 0.5}), [PLAIN, _with(pruner="obs")]),
    (
        "50% sparse + int4",
        _weights({"sparsity": 0.5, "weight_bits": 4}),
        [PLAIN, _with(pruner="obs", quantiser="gptq")],
    ),
    *(
        (
            f"rank 1/{round(1 / fraction)}",
            _rank(fraction),
            [PLAIN, _with(factoriser="whitened"), _with(factoriser="fwsvd")],
        )
        for fraction in (0.5, 0.25)
    ),
]


def _label(methods: Methods) -> str:
    """The methods that differ from the plain ones (``plain`` if none), e.g. ``obs + gptq``."""
    plain = PLAIN
    changed = [v for k, v in methods.model_dump().items() if v != getattr(plain, k)]
    return " + ".join(changed) or "plain"


def compare(workload: Workload) -> list[tuple[str, str, float, float]]:
    """(setting, methods, metric, seconds to compress) for every setting and method."""
    model, _ = fold_batchnorm(workload.model)
    layers = tuple(discover_layers(model))
    last = [x.name for x in layers if x.kind is LayerKind.LINEAR][-1]
    rows = [("fp32", "-", float(workload.evaluate(model)), 0.0)]
    for name, choose, methods_list in SETTINGS:
        candidate = Candidate.from_dict({x.name: dict(choose(x, last)) for x in layers})
        for methods in methods_list:
            start = time.perf_counter()
            with torch.no_grad():
                stats = candidate_stats(model, layers, candidate, methods, workload.calibration)
                compressed, _ = compress_model(
                    model, layers, candidate, None, workload.calibration, methods, stats
                )
            seconds = time.perf_counter() - start
            metric = float(workload.evaluate(compressed))
            rows.append((name, _label(methods), metric, seconds))
            print(f"{name:20s} {_label(methods):14s} {metric:8.2f} {seconds:6.1f}s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="digits-cnn")
    args = parser.parse_args()
    torch.manual_seed(0)
    workload = resolve_workload(args.workload)
    rows = compare(workload)
    print(f"\n{args.workload}; CPU flags: {cpu_flags()}\n")
    print("| setting | methods | metric | compress s |\n|---|---|---|---|")
    for name, methods, metric, seconds in rows:
        print(f"| {name} | {methods} | {metric:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
