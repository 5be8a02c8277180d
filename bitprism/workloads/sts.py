"""Sentence-pair similarity data in the STS-B layout, and its metric (Spearman x 100).

The layout is that of ``sts-dev.tsv``: a header line ``score<TAB>sentence1<TAB>sentence2``,
then one pair per line, UTF-8, tab separated, **no quoting** (STS-B sentences may start with
or hold an unmatched ``"``, which a CSV reader would merge across lines). Scores are any real
numbers (STS-B's lie in [0, 5]); only their order matters to the metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

PACKAGED_STSB_DEV = Path(__file__).parent / "data" / "stsb" / "sts-dev.tsv"
HEADER = ("score", "sentence1", "sentence2")


@dataclass(frozen=True)
class SentencePairs:
    """Gold scores and the two sentences of each pair, in file order."""

    scores: tuple[float, ...]
    first: tuple[str, ...]
    second: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.scores)

    def subset(self, indices: list[int]) -> SentencePairs:
        return SentencePairs(
            tuple(self.scores[i] for i in indices),
            tuple(self.first[i] for i in indices),
            tuple(self.second[i] for i in indices),
        )


def read_pairs(path: Path) -> SentencePairs:
    """Read an STS-B-layout TSV file.

    Raises:
        ValueError: naming the file and line that is not in the layout (missing file, wrong
            header, a line without exactly three fields, a score that is not a number, an empty
            sentence) or a file with fewer than 20 pairs (too few for a rank correlation).
    """
    if not path.is_file():
        raise ValueError(f"data {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise ValueError(f"data {path}: not UTF-8 text ({exc})") from None
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or tuple(lines[0].rstrip("\r").split("\t")) != HEADER:
        raise ValueError(
            f"data {path}: line 1 must be the header 'score<TAB>sentence1<TAB>sentence2' "
            "(the layout of STS-B's sts-dev.tsv)"
        )
    scores, first, second = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3:
            raise ValueError(
                f"data {path}, line {number}: {len(fields)} tab-separated fields, expected 3 "
                "(score, sentence1, sentence2)"
            )
        try:
            score = float(fields[0])
        except ValueError:
            raise ValueError(
                f"data {path}, line {number}: score {fields[0]!r} is not a number"
            ) from None
        if not np.isfinite(score):
            raise ValueError(f"data {path}, line {number}: score {fields[0]!r} is not finite")
        if not fields[1].strip() or not fields[2].strip():
            raise ValueError(f"data {path}, line {number}: an empty sentence")
        scores.append(score)
        first.append(fields[1])
        second.append(fields[2])
    if len(scores) < 20:
        raise ValueError(f"data {path}: {len(scores)} pairs; at least 20 are needed")
    if len(set(scores)) < 2:
        raise ValueError(f"data {path}: every pair has the same score; nothing to correlate")
    return SentencePairs(tuple(scores), tuple(first), tuple(second))


def split_calibration(pairs: SentencePairs, every: int = 10) -> tuple[SentencePairs, SentencePairs]:
    """(scored, calibration): every ``every``-th pair is held out for calibration.

    Calibration (parity checks, pruning importance, sensitivity) never sees a scored pair, so
    the metric is not tuned on the data it reports.
    """
    held = [i for i in range(len(pairs)) if i % every == every - 1]
    kept = [i for i in range(len(pairs)) if i % every != every - 1]
    return pairs.subset(kept), pairs.subset(held)


def spearman_x100(similarities: np.ndarray, gold: tuple[float, ...]) -> float:
    """Spearman rank correlation of predicted similarities with the gold scores, times 100."""
    statistic = spearmanr(similarities, np.asarray(gold)).statistic
    return float(statistic) * 100.0 if np.isfinite(statistic) else 0.0
