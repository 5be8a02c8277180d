"""The STS-B-layout reader and the calibration split, on the packaged dev file and bad files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from bitprism.workloads.sts import PACKAGED_STSB_DEV, read_pairs, spearman_x100, split_calibration


def test_packaged_dev_file_is_byte_exact_and_complete() -> None:
    digest = hashlib.sha256(PACKAGED_STSB_DEV.read_bytes()).hexdigest()
    assert digest == "9847c811e123501874b7296eb2780c2e6864f19c51342590cc9db7abefe9840e"
    assert (PACKAGED_STSB_DEV.parent / "original" / "LICENSE.txt").is_file()
    pairs = read_pairs(PACKAGED_STSB_DEV)
    assert len(pairs) == 1500
    assert pairs.scores[:2] == (5.0, 4.75)
    assert pairs.first[0] == "A man with a hard hat is dancing."
    # Sentences with an unmatched quote stay one field each: no CSV-style merging of lines.
    assert any(s.startswith('"') for s in pairs.first + pairs.second)
    assert min(pairs.scores) == 0.0 and max(pairs.scores) == 5.0


def test_calibration_pairs_are_never_scored() -> None:
    pairs = read_pairs(PACKAGED_STSB_DEV)
    scored, calibration = split_calibration(pairs)
    assert len(scored) == 1350 and len(calibration) == 150
    scored_pairs = set(zip(scored.first, scored.second, strict=True))
    held_pairs = set(zip(calibration.first, calibration.second, strict=True))
    assert not scored_pairs & held_pairs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sentence1\tsentence2\n", "line 1 must be the header"),
        ("score\tsentence1\tsentence2\n1.0\tonly one sentence\n", "line 2: 2 tab-separated"),
        ("score\tsentence1\tsentence2\n" + "high\ta\tb\n", "line 2: score 'high' is not a number"),
        ("score\tsentence1\tsentence2\n" + "1\ta\t \n", "line 2: an empty sentence"),
        ("score\tsentence1\tsentence2\n" + "1\ta\tb\n" * 5, "5 pairs; at least 20"),
        ("score\tsentence1\tsentence2\n" + "1\ta\tb\n" * 30, "the same score"),
    ],
)
def test_bad_files_are_named_with_their_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_pairs(path)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        read_pairs(tmp_path / "absent.tsv")


def test_spearman_of_a_constant_prediction_is_zero_not_nan() -> None:
    assert spearman_x100(np.ones(5), (1.0, 2.0, 3.0, 4.0, 5.0)) == 0.0
    assert spearman_x100(np.arange(5.0), (1.0, 2.0, 3.0, 4.0, 5.0)) == pytest.approx(100.0)
