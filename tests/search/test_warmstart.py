"""The warm start on the real digits CNN: its byte predictions are the built files' bytes."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from bitprism.compression.apply import compress_layer
from bitprism.evaluators.latency import timing_inputs
from bitprism.evaluators.worker import build_candidate
from bitprism.kernels.base import get_backend
from bitprism.kernels.onnx_graph import initializer_bytes
from bitprism.search.guidance import job_costs
from bitprism.search.prepare import eval_context, prepare_job
from bitprism.search.store import Store
from bitprism.search.warmstart import Predictor, seed_summary, warm_start
from bitprism.sensitivity.damage import Structure, measure_damage
from bitprism.spaces.candidate import LayerChoice
from bitprism.workloads.base import as_tuple
from tests.fixtures import job_spec


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino-cpu"])
def test_seeds_trade_damage_for_bytes_and_their_bytes_are_the_files(
    digits, store_url: str, tmp_path: Path, backend: str
) -> None:  # type: ignore[no-untyped-def]
    spec = job_spec(store_url, tmp_path, backend=backend)
    job = prepare_job(spec, digits)
    model = job.workload.model
    batches = list(job.workload.calibration[:2])
    structure = Structure(job.groups, job.unit_order)
    table = measure_damage(model, job.space, batches, structure)
    runtime = get_backend(backend)
    inputs = timing_inputs(as_tuple(job.workload.example_inputs), 32)
    store = Store(store_url)
    costs = job_costs(spec, job, inputs, store)
    assert costs.timed > 0
    again = job_costs(spec, job, inputs, store)
    assert again.timed == 0 and again.form_ms == costs.form_ms  # every timing came from the cache
    seeds = warm_start(Predictor(job.space, table, costs, job.groups))
    assert len(seeds) >= 4
    assert any(c.keep < 1.0 for s in seeds for _, c in s.candidate)  # structure is searched
    assert "integer-program seeds" in seed_summary(seeds)
    # Byte-budget seeds are no slower than fp32 by their forms' timings, and a larger byte
    # budget never predicts more damage among them.
    by_size = sorted((s for s in seeds if s.budget == "bytes"), key=lambda s: s.layer_bytes)
    assert len(by_size) >= 2 and all(s.faster >= 1.0 for s in by_size)
    assert all(a.damage >= b.damage for a, b in zip(by_size, by_size[1:], strict=False))
    assert max(s.faster for s in seeds) > 1.0
    # Predicted bytes are the bytes of the file the worker builds, to the byte.
    fp32_layers = sum(
        runtime.layer_bytes(
            layer,
            compress_layer(
                layer,
                model.get_submodule(layer.name).weight,
                getattr(model.get_submodule(layer.name), "bias", None),
                LayerChoice(),
            ),
        )
        for layer in job.space.layers
    )
    other = initializer_bytes(onnx.load_model_from_string(job.base_onnx)) - fp32_layers
    ctx = eval_context(spec, job)
    for seed in sorted(seeds, key=lambda s: s.layer_bytes)[:: max(1, len(seeds) // 3)]:
        built = build_candidate(ctx, seed.candidate)
        assert built.artifact.weight_bytes == seed.layer_bytes + other, seed.candidate
        assert seed.smaller == pytest.approx(fp32_layers / seed.layer_bytes)
