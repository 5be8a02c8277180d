"""Bad input, as a user gives it: each case a message naming the problem, a non-zero exit, and
nothing half-written (no job row, or a job marked failed with the reason), while another
job runs on, unaffected.

Spec and path cases go through ``bitprism submit`` (refused before anything is stored);
cases only a run can find (the workload's metric, the model, the data file) go through
``bitprism search`` and leave the job failed with the reason, or nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitprism.cli import app
from bitprism.search import jobs
from bitprism.search.schema import JobStatus
from bitprism.search.store import Store
from tests.fixtures import job_spec

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]
runner = CliRunner()

GOOD = (
    "workload: tests.fixtures:token_mlp\ntrials: 2\nworkers: 1\nwarm_start: 0\n"
    "latency: {repeats: 5, passes: 3}\n"
)

# (case, spec YAML (GOOD's fields, then these lines), extra CLI arguments, words the message has)
SPEC_CASES = [
    ("unknown field", "trails: 3\n", [], "trails"),
    ("mistyped field", "workers: two\n", [], "workers"),
    ("trials zero", "trials: 0\n", [], "trials"),
    ("trials negative", "trials: -4\n", [], "trials"),
    ("trials not a number", "trials: many\n", [], "trials"),
    ("bits 0", "overrides: {up: {weight_bits: [0]}}\n", [], "weight_bits"),
    ("bits 1", "overrides: {up: {weight_bits: [1]}}\n", [], "weight_bits"),
    ("bits -3", "overrides: {up: {weight_bits: [-3]}}\n", [], "weight_bits"),
    ("bits 99", "overrides: {up: {weight_bits: [99]}}\n", [], "weight_bits"),
    ("rank above the layer", "overrides: {up: {rank_fraction: [1.5]}}\n", [], "rank_fraction"),
    ("sparsity 1.5", "overrides: {up: {sparsity: [1.5]}}\n", [], "sparsity"),
    ("unknown knob", "overrides: {up: {bits: [4]}}\n", [], "bits"),
    ("empty override", "overrides: {up: {weight_bits: []}}\n", [], "empty"),
    ("negative drop", "constraints: {max_drop_pct: -1}\n", [], "max_drop_pct"),
    ("unknown constraint", "constraints: {max_accuracy_drop: 1}\n", [], "max_accuracy_drop"),
    ("unknown objective", "objectives: [accuracy, beauty]\n", [], "objectives"),
    ("repeated objective", "objectives: [accuracy, accuracy]\n", [], "objectives"),
    ("unknown sampler", "sampler: cmaes\n", [], "sampler"),
    ("unknown backend", "backend: tensorrt\n", [], "tensorrt"),
    ("unknown quantiser", "methods: {quantiser: awq}\n", [], "awq"),
    ("timing batch 0", "latency: {batch: 0}\n", [], "latency.batch"),
    ("timeout 0", "trial_timeout_s: 0\n", [], "trial_timeout_s"),
    ("job id with a path", "job_id: ../etc\n", [], "job_id"),
    ("job id with a space", "job_id: bad id\n", [], "job_id"),
    ("unknown builtin", "workload: digits-cnnn\n", [], "digits-cnnn"),
    ("module not found", "workload: no.such:make\n", [], "cannot import module 'no.such'"),
    ("factory not found", "workload: tests.fixtures:nope\n", [], "no callable 'nope'"),
    ("option it does not take", "data: x.tsv\n", [], "does not take data"),
    ("option it needs", "workload: minilm-stsb\nmodel_dir: m\n", [], "does not take model_dir"),
    ("store not a URL", "", ["--store", "foo"], "not a database URL"),
    ("store of another kind", "", ["--store", "mysql://u@h/db"], "only sqlite"),
    ("in-memory store", "", ["--store", "sqlite://"], "in-memory"),
    ("store inside /proc", "", ["--store", "sqlite:////proc/x/s.db"], "inside /proc"),
    ("unreachable database", "", ["--store", "postgresql://u:p@127.0.0.1:9/db"], "cannot reach"),
    ("output dir in /proc", "output_dir: /proc/bitprism-runs\n", [], "inside /proc"),
    ("output dir is a file", "output_dir: {file}\n", [], "is a file"),
]
FILE_CASES = [
    ("spec is a list", "- trials: 3\n", "a mapping"),
    ("spec is a scalar", "42\n", "a mapping"),
    ("spec is empty", "", "empty"),
    ("spec is not YAML", "trials: [1,\n", "YAML"),
]


def _ids(cases: list[tuple]) -> list[str]:  # type: ignore[type-arg]
    return [case[0] for case in cases]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A job running in the background through every case: it must finish unaffected."""
    folder = tmp_path_factory.mktemp("running")
    url = f"sqlite:///{folder / 'store.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(ROOT))
        jobs.submit(job_spec(url, folder, job_id="steady", trials=6, workers=1, warm_start=0))
    yield url, folder


@pytest.fixture(autouse=True)
def _in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: tuple[str, Path]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _nothing_written(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    assert not store.exists() or Store(f"sqlite:///{store}").jobs() == []
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("case", "lines", "args", "words"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES]
)
def test_a_bad_spec_is_refused_before_anything_is_stored(
    tmp_path: Path, case: str, lines: str, args: list[str], words: str
) -> None:
    (tmp_path / "file").write_text("x")
    spec = tmp_path / "job.yaml"
    base = f"{GOOD}store: sqlite:///{tmp_path / 'store.db'}\noutput_dir: {tmp_path / 'runs'}\n"
    spec.write_text(_merged(base, lines.replace("{file}", str(tmp_path / "file"))))
    result = runner.invoke(app, ["submit", str(spec), *args])
    assert result.exit_code != 0, (case, result.output)
    assert words in result.output, (case, result.output)
    assert "Traceback" not in result.output
    _nothing_written(tmp_path)


@pytest.mark.parametrize(("case", "text", "words"), FILE_CASES, ids=_ids(FILE_CASES))
def test_a_spec_file_that_is_no_spec_is_refused(
    tmp_path: Path, case: str, text: str, words: str
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(text)
    result = runner.invoke(app, ["submit", str(spec)])
    assert result.exit_code != 0 and words in result.output, (case, result.output)
    missing = runner.invoke(app, ["submit", str(tmp_path / "none.yaml")])
    assert missing.exit_code != 0 and "none.yaml" in missing.output
    _nothing_written(tmp_path)


def test_a_taken_job_id_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    Store(url).create_job("taken", "w", {"trials": 1}, "bitprism-taken")
    spec = tmp_path / "job.yaml"
    spec.write_text(f"{GOOD}store: {url}\noutput_dir: {tmp_path / 'runs'}\njob_id: taken\n")
    result = runner.invoke(app, ["submit", str(spec)])
    assert result.exit_code == 2 and "job 'taken' exists already (pending)" in result.output
    assert [j.id for j in Store(url).jobs()] == ["taken"]


# (case, the spec's workload and extra lines, extra CLI arguments, words the message has)
RUN_CASES = [
    ("override of no layer", "tests.fixtures:token_mlp\noverrides: {nowhere: {keep: [0.5]}}", [],
     "matches no layer"),
    ("metric raises", "tests.fixtures:exploding", [], "metric exploded on purpose"),
    ("metric is NaN", "tests.fixtures:says_nan", [], "nan"),
    ("metric is a string", "tests.fixtures:says_a_string", [], "str"),
    ("metric hangs", "tests.fixtures:always_hangs", ["--trial-timeout", "10"],
     "no result after 10 s"),
    ("factory raises", "tests.fixtures:factory_raises", [], "data file is gone"),
    ("factory returns no Workload", "tests.fixtures:not_a_workload", [], "not Workload"),
    ("no compressible layer", "tests.fixtures:nothing_to_compress", [], "compress"),
    ("data file missing", "minilm-stsb", ["--data", "{tmp}/none.tsv"], "none.tsv"),
    ("data file empty", "minilm-stsb", ["--data", "{tmp}/empty.tsv"], "empty.tsv"),
    ("data file malformed", "minilm-stsb", ["--data", "{tmp}/bad.tsv"], "bad.tsv"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "workload", "args", "words"), RUN_CASES, ids=_ids(RUN_CASES))
def test_what_only_a_run_finds_fails_the_job_with_the_reason(
    tmp_path: Path, ray_local: None, case: str, workload: str, args: list[str], words: str
) -> None:
    (tmp_path / "empty.tsv").write_text("")
    (tmp_path / "bad.tsv").write_text("score\tonly one column\n1.0\n")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"workload: {workload}\ntrials: 2\nworkers: 1\nwarm_start: 0\nstore: {url}\n"
        f"output_dir: {tmp_path / 'runs'}\njob_id: bad\n"
    )
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, ["search", str(spec), "--no-progress", *args])
    assert result.exit_code != 0, (case, result.output)
    assert words.lower() in result.output.lower(), (case, result.output)
    assert "Traceback" not in result.output
    store = tmp_path / "store.db"
    job = Store(url).job("bad") if store.exists() else None
    assert job is None or (job.status is JobStatus.FAILED and job.error), (case, job)


def test_the_job_running_through_all_of_it_is_unaffected(running: tuple[str, Path]) -> None:
    url, folder = running
    store = Store(url)
    deadline = time.monotonic() + 300
    while store.job_status("steady") not in (JobStatus.DONE, JobStatus.FAILED):
        assert time.monotonic() < deadline, (folder / "runs" / "steady" / "job.log").read_text()
        time.sleep(1)
    assert store.job_status("steady") is JobStatus.DONE
    complete = [t for t in store.trials("steady") if t.number is not None and t.verified]
    assert len(complete) == 6


def _merged(base: str, lines: str) -> str:
    """``base`` with the keys ``lines`` sets replaced by theirs (YAML, one key a line)."""
    keys = {line.split(":")[0] for line in lines.splitlines() if ":" in line}
    kept = [line for line in base.splitlines() if line.split(":")[0] not in keys]
    return "\n".join(kept) + "\n" + lines
