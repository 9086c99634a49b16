"""Exact replay: a run killed at any moment and rerun with the same command writes what the
uninterrupted run writes, byte for byte (timings aside). Plus the run folder's lock, and a
failed start that leaves nothing behind to block the corrected one.

The interrupted runs are real `star run` processes killed with SIGKILL; the reference runs
in this test process, whose global random state has seen everything the suite did before, so
a draw from global state would show up as a difference.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from star.active.journal import Journal
from star.active.runfolder import RunFolder
from star.tools.cli import main
from tests.conftest import tiny_settings, toy_records, write_jsonl

REPO = Path(__file__).resolve().parents[1]
TIMINGS = ("train_seconds", "score_seconds", "eval_seconds")
ROUND_FILES = ("batch.json", "scores.jsonl", "predictions.jsonl")


def sets(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


def run_argv(out: Path, strategy: str, overrides: list[str]) -> list[str]:
    return ["run", "--strategy", strategy, "--seed", "0", "--out", str(out), *sets(overrides)]


def launch(argv: list[str], cache: Path, log: Path) -> subprocess.Popen:
    """`python -m star ARGV` in its own process, output appended to `log`."""
    env = {**os.environ, "STAR_CACHE_DIR": str(cache), "CI": "1"}
    with log.open("a") as handle:
        return subprocess.Popen([sys.executable, "-m", "star", *argv], cwd=REPO, env=env,
                                stdout=handle, stderr=subprocess.STDOUT)


def finish(argv: list[str], cache: Path, log: Path) -> None:
    """Run `star ARGV` in a process to its end; it must succeed."""
    process = launch(argv, cache, log)
    assert process.wait(timeout=600) == 0, log.read_text()[-3000:]


def wait_for(condition, process: subprocess.Popen, timeout: float = 300.0) -> None:
    """Poll every 5 ms until `condition()` holds or the process ends."""
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None:
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.005)


def rounds_done(out: Path) -> int:
    try:
        return len(json.loads((out / "results.json").read_text())["rounds"])
    except FileNotFoundError:
        return 0


def lock_holder(out: Path) -> str:
    try:
        return (out / ".lock").read_text().strip()
    except FileNotFoundError:
        return ""


def run_files(out: Path) -> dict[str, str]:
    """What a replay must reproduce: results.json without its timings, config.yaml, every
    round's batch, scores and predictions, the adapter weights (by hash), the labels in force."""
    results = json.loads((out / "results.json").read_text())
    for row in results["rounds"]:
        for key in TIMINGS:
            row.pop(key)
        if row.get("guard"):
            row["guard"].pop("seconds")  # the prompt guard's time: all else of it must replay
    files = {"results.json": json.dumps(results, indent=1),
             "config.yaml": (out / "config.yaml").read_text(),
             "labels": json.dumps({i: a.value for i, a in Journal(out / "labels.jsonl").latest().items()},
                                  sort_keys=True)}
    for path in sorted((out / "rounds").glob("*/*")):
        name = str(path.relative_to(out))
        if path.name in ROUND_FILES:
            files[name] = path.read_text()
        elif path.name == "adapter":
            weights = (path / "adapter_model.safetensors").read_bytes()
            files[name] = hashlib.sha256(weights).hexdigest()
    return files


def differing(reference: dict[str, str], replay: dict[str, str]) -> list[str]:
    return sorted(name for name in reference.keys() | replay.keys()
                  if reference.get(name) != replay.get(name))


@pytest.mark.parametrize(("strategy", "after_round", "shared_cache"), [
    ("me-star", 1, True),          # μ_b cached by the reference, read back by the replay
    ("pe+dynamic+mc", 0, False),   # μ_b computed afresh by the replay
])
def test_a_run_killed_after_a_round_replays_exactly(tiny_overrides, tmp_path, capsys, monkeypatch,
                                                    strategy, after_round, shared_cache):
    """The run is a `star run` process killed once results.json lists the round; the rerun
    runs here, after the reference, so leftovers of this process's state would show too."""
    overrides = [*tiny_overrides, "loop.budget=32"]  # four rounds: the kill lands mid-run
    reference, out, log = tmp_path / "reference", tmp_path / "killed", tmp_path / "log.txt"
    assert main(run_argv(reference, strategy, overrides)) == 0
    cache = tmp_path / ("cache" if shared_cache else "cache-replay")
    process = launch(run_argv(out, strategy, overrides), cache, log)
    wait_for(lambda: rounds_done(out) > after_round, process)
    assert process.poll() is None, f"the run ended before the kill:\n{log.read_text()[-3000:]}"
    process.kill()
    process.wait()
    assert after_round < rounds_done(out) < 4
    monkeypatch.setenv("STAR_CACHE_DIR", str(cache))
    assert main(run_argv(out, strategy, overrides)) == 0
    assert "resuming" in capsys.readouterr().err
    assert differing(run_files(reference), run_files(out)) == []


def test_a_run_stopped_right_after_writing_a_batch_replays_exactly(tiny_overrides, tmp_path,
                                                                   monkeypatch):
    """A stop between writing round 1's batch and finishing the round: the rerun reads the
    batch instead of recomputing it, and must still record everything the round records (λ)."""
    reference, out = tmp_path / "reference", tmp_path / "stopped"
    assert main(run_argv(reference, "me+dynamic", tiny_overrides)) == 0
    write_batch = RunFolder.write_batch

    def write_then_stop(folder, batch):
        write_batch(folder, batch)
        if batch.round == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # undoing only this: the cache stays the test's own
        patch.setattr(RunFolder, "write_batch", write_then_stop)
        assert main(run_argv(out, "me+dynamic", tiny_overrides)) == 130
    assert rounds_done(out) == 1 and (out / "rounds" / "1" / "batch.json").exists()
    assert main(run_argv(out, "me+dynamic", tiny_overrides)) == 0
    assert differing(run_files(reference), run_files(out)) == []


def test_kill_9_soak(tiny_model_dir, tmp_path, capsys):
    """N kills (STAR_SOAK_KILLS, default 5) at seeded random moments, each followed by a
    rerun, then a rerun to the end: every file equals the uninterrupted run's.

    A kill lands a random delay after the rerun takes the folder's lock (process start-up,
    ~7 s of imports, is not worth killing), of up to two rounds of the reference's wall time.
    Rounds are of one example each and number 3N + 2, so a rerun gets about one round done
    on average before its kill, the kills fall all over the rounds, and all N land mid-run."""
    kills_wanted = int(os.environ.get("STAR_SOAK_KILLS", "5"))
    rounds = 3 * kills_wanted + 2
    budget = 4 + rounds - 1
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", toy_records(budget + 40, 0))
    write_jsonl(data / "test.jsonl", toy_records(16, 1))
    overrides = [*tiny_settings(tiny_model_dir, data), "loop.warm_start=4", "loop.step=1",
                 f"loop.budget={budget}", f"loop.pool_size={budget + 20}",
                 "guard.folds=2", "guard.min_per_class=0"]  # its k trainings replay too
    reference, out, log = tmp_path / "reference", tmp_path / "soaked", tmp_path / "log.txt"
    start = time.monotonic()
    assert main(run_argv(reference, "me-star", overrides)) == 0
    round_wall = (time.monotonic() - start) / rounds
    argv, cache, delays = run_argv(out, "me-star", overrides), tmp_path / "cache", random.Random(0)
    kills, progress = 0, []
    while kills < kills_wanted:
        process = launch(argv, cache, log)
        wait_for(lambda p=process: lock_holder(out) == str(p.pid), process)
        time.sleep(delays.uniform(0, 2 * round_wall))
        if process.poll() is not None:
            break
        process.kill()
        process.wait()
        kills += 1
        progress.append(rounds_done(out))
    assert kills == kills_wanted, f"the run finished after {kills} kills:\n{log.read_text()[-3000:]}"
    assert rounds_done(out) < rounds
    finish(argv, cache, log)
    expected, got = run_files(reference), run_files(out)
    different = differing(expected, got)
    leftovers = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                       if p.name.endswith((".tmp", ".partial")))
    with capsys.disabled():
        print(f"\nkill -9 soak: {kills} kills (rounds complete at each: {progress} of {rounds}), "
              f"{len(expected)} files compared, {len(expected) - len(different)} identical, "
              f"{len(different)} different{f' {different}' if different else ''}, "
              f"{len(leftovers)} temporary files left, {time.monotonic() - start:.0f} s")
    assert different == []
    assert leftovers == []


def test_taking_the_folder_removes_what_killed_writers_left(tmp_path):
    """A kill in the middle of an atomic write leaves its hidden temporary file behind; the
    next process to take the folder deletes it, but not a file whose writer still runs."""
    out = tmp_path / "run"
    (out / "rounds" / "3").mkdir(parents=True)
    ended = subprocess.Popen(["true"])
    ended.wait()
    stale = out / "rounds" / "3" / f".batch.json.{ended.pid}.tmp"
    live = out / f".results.json.{os.getpid()}.tmp"
    for path in (stale, live):
        path.write_text('{"round"')
    with RunFolder(out).lock():
        pass
    assert not stale.exists() and live.exists()


def test_a_second_run_on_a_folder_in_use_names_the_holder(tiny_overrides, tmp_path, capsys):
    """Two processes in one run folder would interleave rounds: the second exits 2 with the
    first one's PID, while the first keeps the folder."""
    out, log = tmp_path / "run", tmp_path / "log.txt"
    slow = [*tiny_overrides, "train.epochs=200"]
    process = launch(run_argv(out, "random", slow), tmp_path / "cache", log)
    try:
        wait_for(lambda: lock_holder(out) == str(process.pid), process)
        assert process.poll() is None, log.read_text()[-3000:]
        code = main(run_argv(out, "random", slow))
        err = capsys.readouterr().err
        assert process.poll() is None, "the first run ended: the test proves nothing"
    finally:
        process.kill()
        process.wait()
    assert code == 2
    assert f"run folder '{out}' is in use by process {process.pid}" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_start_that_cannot_load_the_model_leaves_no_config(tiny_overrides, tmp_path, capsys):
    """config.yaml is written only once the model and data loaded: a start with a wrong model
    path must not leave a config that blocks the corrected command as 'another config'."""
    out = tmp_path / "run"
    assert main(run_argv(out, "random", [*tiny_overrides, "model.name=/nonexistent"])) == 2
    err = capsys.readouterr().err
    assert "model folder '/nonexistent' does not exist" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "config.yaml").exists()
    assert main(run_argv(out, "random", tiny_overrides)) == 0
    assert "strategy: random" in (out / "config.yaml").read_text()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
