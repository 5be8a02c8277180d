"""Interleaved timing against fp32 on real ONNX files of the digits CNN."""

from __future__ import annotations

import torch

from bitprism.config import LatencySpec
from bitprism.evaluators.latency import compare_calls, compare_latency, timing_inputs
from bitprism.kernels.base import DeviceTime, get_backend

LOAD = get_backend("ort-cpu").load


def test_a_model_timed_against_itself_is_about_as_fast(digits, digits_onnx) -> None:
    spec = LatencySpec(repeats=10, passes=5, warmup=3)
    modules = [LOAD(digits_onnx, 1), LOAD(digits_onnx, 1)]
    reference, twin = compare_latency(modules, (digits.example_inputs,), spec)
    assert reference.speedup == reference.speedup_min == reference.speedup_max == 1.0
    assert 0.7 < twin.speedup < 1.4  # same file; only noise separates them
    assert twin.speedup_min <= twin.speedup <= twin.speedup_max
    assert twin.latency.runs == 50 and twin.latency.p10_ms <= twin.latency.p90_ms
    assert twin.reference_ms == reference.reference_ms > 0  # both: fp32's median pass median


def test_more_work_shows_as_a_lower_speedup(digits, digits_onnx) -> None:
    """A batch 8x larger through the same graph must time clearly slower than fp32's own."""
    spec = LatencySpec(repeats=10, passes=3, warmup=2)
    small, big = LOAD(digits_onnx, 1), LOAD(digits_onnx, 1)
    x = digits.example_inputs
    reference, _ = compare_latency([small, big], (x,), spec)
    larger = timing_inputs((x,), 256)
    assert larger[0].shape[0] == 256 and torch.equal(larger[0][:32], x)
    base = compare_latency([small], (x,), spec)[0].latency.median_ms
    heavy = compare_latency([big], larger, spec)[0].latency.median_ms
    assert heavy > 3 * base and reference.speedup == 1.0


def test_a_call_the_device_timed_is_taken_at_its_word() -> None:
    # A GPU call returns CUDA events' time of the run alone (not the cache flush before it).
    spec = LatencySpec(warmup=1, repeats=3, passes=2)
    fp32, half = compare_calls([lambda: DeviceTime(2.0), lambda: DeviceTime(0.5)], spec)
    assert fp32.latency.median_ms == 2.0 and half.latency.median_ms == 0.5
    assert half.speedup == half.speedup_min == half.speedup_max == 4.0
