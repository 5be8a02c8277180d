"""Re-time an exported digits model against fp32 with plain onnxruntime and no bitprism code.

The check a sceptical user makes after `make demo`: load both files in stock onnxruntime
(1 thread, batch 32 of real digits), time them in alternating rounds, print the speed-up's
median and extremes, and the file size ratio.

    .venv/bin/python benchmarks/independent_check.py [--model out/best.onnx] [--fp32 FILE]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import time

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_digits


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _median_ms(session: ort.InferenceSession, feed: dict[str, np.ndarray], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="out/best.onnx")
    parser.add_argument("--fp32", default=None, help="default: the demo's cached fp32 export")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    fp32 = args.fp32 or sorted(glob.glob("bitprism-runs/models/*/base.onnx"))[0]
    x = (load_digits().images[:32].astype(np.float32) / 16.0)[:, None]
    sessions = {"fp32": _session(fp32), "model": _session(args.model)}
    feed = {sessions["fp32"].get_inputs()[0].name: x}
    for session in sessions.values():
        _median_ms(session, feed, 50)
    medians: dict[str, list[float]] = {name: [] for name in sessions}
    for r in range(args.rounds):
        for name in sessions if r % 2 == 0 else reversed(list(sessions)):
            medians[name].append(_median_ms(sessions[name], feed, 50))
    ratios = [f / m for f, m in zip(medians["fp32"], medians["model"], strict=True)]
    smaller = os.path.getsize(fp32) / os.path.getsize(args.model)
    print(
        f"fp32 {statistics.median(medians['fp32']):.3f} ms, model "
        f"{statistics.median(medians['model']):.3f} ms; speed-up {statistics.median(ratios):.3f} "
        f"({min(ratios):.3f}-{max(ratios):.3f}); {smaller:.2f}x smaller file"
    )


if __name__ == "__main__":
    main()
