"""The warm start on the real digits CNN: its byte predictions are the built files' bytes."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from bitprism.compression.apply import compress_layer
from bitprism.evaluators.worker import build_candidate
from bitprism.kernels.base import get_backend
from bitprism.kernels.onnx_graph import initializer_bytes
from bitprism.search.prepare import eval_context, prepare_job
from bitprism.search.warmstart import seed_summary, warm_start
from bitprism.sensitivity.damage import Structure, measure_damage
from bitprism.spaces.candidate import LayerChoice
from tests.fixtures import job_spec


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino-cpu"])
def test_seeds_trade_damage_for_bytes_and_their_bytes_are_the_files(
    digits, store_url: str, tmp_path: Path, backend: str
) -> None:  # type: ignore[no-untyped-def]
    spec = job_spec(store_url, tmp_path, backend=backend)
    job = prepare_job(spec, digits)
    model = job.workload.model
    batches = list(job.workload.calibration[:2])
    structure = Structure(job.groups, job.unit_order, job.workload.example_inputs)
    table = measure_damage(model, job.space, batches, structure)
    runtime = get_backend(backend)
    seeds = warm_start(model, job.space, table, runtime, job.groups)
    assert len(seeds) >= 5
    assert any(c.keep < 1.0 for s in seeds for _, c in s.candidate)  # structure is searched
    assert "integer-program seeds" in seed_summary(seeds)
    # A larger budget never predicts more damage.
    by_size = sorted(seeds, key=lambda s: s.layer_bytes)
    assert all(a.damage >= b.damage for a, b in zip(by_size, by_size[1:], strict=False))
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
    for seed in by_size[:: max(1, len(by_size) // 3)]:
        built = build_candidate(ctx, seed.candidate)
        assert built.artifact.weight_bytes == seed.layer_bytes + other, seed.candidate
        assert seed.smaller == pytest.approx(fp32_layers / seed.layer_bytes)
