"""Several processes (torchrun, gloo on CPU): a pass shared between 2 processes scores exactly
as 1 process does, DDP training gives the adapter 1 process trains up to float summation
order, selections are the same, and a process dying mid-round makes the launch fail and the
same command resume from the scoring parts that were saved.

Each launch starts 2 Python processes on the tiny model (about 15 s on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from star.files import read_jsonl
from star.model.lora import ADAPTER_WEIGHTS
from star.tools.cli import main

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "tests" / "launch_star.py"

ADAPTER_TOLERANCE = 1e-6
"""Largest difference allowed between a 2-process and a 1-process adapter (fp32, tiny model):
the sums of gradients run in another order, nothing else differs. Measured: see the test."""


def star_args(out: Path, overrides: list[str], strategy: str) -> list[str]:
    sets = [part for item in overrides for part in ("--set", item)]
    return ["run", "--strategy", strategy, "--seed", "0", "--out", str(out), *sets]


def launch(args: list[str], *, processes: int, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess:
    """`star` under torchrun with `processes` processes (1: plain Python, no launcher)."""
    environment = {**os.environ, "CI": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                   **(env or {})}
    if processes == 1:
        command = [sys.executable, str(LAUNCHER), *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(processes), str(LAUNCHER), *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600,
                          check=False)


def rounds(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rounds"]


def adapter(out: Path, k: int) -> dict:
    return load_file(out / "rounds" / str(k) / "adapter" / ADAPTER_WEIGHTS)


SCORE_TOLERANCE = 1e-4
"""How far one example's score may differ between a 1- and a 2-process run whose adapters differ
by summation order (ADAPTER_TOLERANCE): fp32 entropies of ~6 nats move by a few ulps (4.8e-7)
through such weights; the margin covers other thread counts and kernels."""


def assert_same_picks_but_ties(one: Path, two: Path, k: int) -> None:
    """Round k scored every example alike (within SCORE_TOLERANCE) in both runs, and picked the
    same examples but where two scores at the cut lay within the tolerance of each other."""
    first, second = ({row["id"]: row for row in read_jsonl(run / "rounds" / str(k) / "scores.jsonl")}
                     for run in (one, two))
    assert first.keys() == second.keys()
    for key, row in first.items():
        assert row["score"] == pytest.approx(second[key]["score"], abs=SCORE_TOLERANCE)
    for a, b in ((first, second), (second, first)):
        cut = min(row["score"] for row in b.values() if row["selected"])
        for key in (key for key, row in a.items() if row["selected"] and not b[key]["selected"]):
            assert abs(a[key]["score"] - cut) <= 2 * SCORE_TOLERANCE, f"round {k}: {key}"


def assert_same_predictions_but_ties(one: Path, two: Path, k: int) -> None:
    """Round k's test predictions agree in both runs but where the model's confidence was within
    the tolerance of a tie between two labels (a binary task: 0.5)."""
    first, second = (read_jsonl(run / "rounds" / str(k) / "predictions.jsonl") for run in (one, two))
    for a, b in zip(first, second, strict=True):
        assert a["id"] == b["id"]
        if a["prediction"] != b["prediction"]:
            assert max(a["confidence"], b["confidence"]) - 0.5 <= SCORE_TOLERANCE, f"round {k}"


@pytest.fixture
def settings(tiny_overrides) -> list[str]:
    """Parts of 8 examples: the 52 unlabeled examples of round 1 make 7 parts, 4 waves."""
    return [*tiny_overrides, "uncertainty.part_size=8", "uncertainty.batch_size=4"]


def test_a_pass_shared_by_two_processes_scores_exactly_as_one(settings, tmp_path):
    """Round 0 runs in 1 process, which then dies as round 1's scoring starts; the same command
    under 2 processes resumes it. Round 1's scores (MC dropout, masks drawn per part) and its
    selection must equal those of the uninterrupted 1-process run, bit for bit."""
    alone = launch(star_args(tmp_path / "one", settings, "me-star"), processes=1)
    assert alone.returncode == 0, alone.stderr[-2000:]
    crashed = launch(star_args(tmp_path / "two", settings, "me-star"), processes=1,
                     env={"STAR_TEST_CRASH": "0:round 1, part 1/"})
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    assert len(rounds(tmp_path / "two")) == 1
    resumed = launch(star_args(tmp_path / "two", settings, "me-star"), processes=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    one, two = (read_jsonl(tmp_path / run / "rounds" / "1" / "scores.jsonl")
                for run in ("one", "two"))
    assert len(one) == 52 and one == two  # ids, every pass, mixed score, selected
    assert rounds(tmp_path / "two")[1]["selected_ids"] == rounds(tmp_path / "one")[1]["selected_ids"]


def test_ddp_training_matches_one_process_and_selects_the_same(settings, tmp_path, capsys):
    """With LoRA dropout off (with it on, each process draws its own masks, as in any DDP run)
    the 2-process adapter equals the 1-process one up to summation order, in every round, and
    every round selects the same examples but for near-ties, which that order may swap."""
    plain = [*settings, "lora.dropout=0"]
    assert main(star_args(tmp_path / "one", plain, "me")) == 0
    run = launch(star_args(tmp_path / "two", plain, "me"), processes=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("AUC") == 1  # only the main process reports
    one, two = rounds(tmp_path / "one"), rounds(tmp_path / "two")
    for k in range(1, len(one)):
        assert_same_picks_but_ties(tmp_path / "one", tmp_path / "two", k)
    worst = 0.0
    for k in range(len(one)):
        a, b = adapter(tmp_path / "one", k), adapter(tmp_path / "two", k)
        assert a.keys() == b.keys()
        worst = max(worst, max(float((a[name] - b[name]).abs().max()) for name in a))
        assert any(float(a[name].abs().max()) > 0 for name in a if "lora_B" in name)
    with capsys.disabled():
        print(f"\n2 vs 1 process: adapters differ by at most {worst:.2e} over "
              f"{len(one)} rounds (tolerance {ADAPTER_TOLERANCE:.0e})")
    assert worst <= ADAPTER_TOLERANCE
    np.testing.assert_allclose([r["train_loss"] for r in two], [r["train_loss"] for r in one],
                               rtol=1e-5)
    for k in range(len(one)):
        assert_same_predictions_but_ties(tmp_path / "one", tmp_path / "two", k)


def test_a_process_dying_mid_round_fails_the_launch_and_the_run_resumes(settings, tmp_path):
    """Rank 1 dies in round 1's second wave (parts 2 and 3 of 7). torchrun stops rank 0 and
    exits non-zero; the first wave's parts are on disk. The same command resumes: it computes
    only the parts that were not saved, and ends where an uninterrupted 2-process run ends."""
    plain = [*settings, "lora.dropout=0"]
    reference = launch(star_args(tmp_path / "whole", plain, "me"), processes=2)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "broken"
    crashed = launch(star_args(out, plain, "me"), processes=2,
                     env={"STAR_TEST_CRASH": "1:round 1, part 4/7"})
    assert crashed.returncode != 0
    saved = sorted(p.name for p in (out / "rounds" / "1" / "scoring").glob("*.npz"))
    assert saved == ["000000.npz", "000001.npz"]
    assert len(rounds(out)) == 1
    record = tmp_path / "computed"
    resumed = launch(star_args(out, plain, "me"), processes=2,
                     env={"STAR_TEST_RECORD": str(record)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    computed = sorted(line for rank in (0, 1)
                      for line in Path(f"{record}.{rank}").read_text().splitlines()
                      if line.startswith("scoring round 1,"))
    assert computed == [f"scoring round 1, part {p}/7" for p in range(3, 8)]
    assert not (out / "rounds" / "1" / "scoring").exists()  # dropped once the batch was written
    whole, broken = rounds(tmp_path / "whole"), rounds(out)
    for a, b in zip(whole, broken, strict=True):
        assert {k: v for k, v in a.items() if not k.endswith("_seconds")} == \
            {k: v for k, v in b.items() if not k.endswith("_seconds")}
    assert read_jsonl(out / "rounds" / "1" / "scores.jsonl") == \
        read_jsonl(tmp_path / "whole" / "rounds" / "1" / "scores.jsonl")


def test_map_spans_cuts_spans_builds_only_what_it_computes_and_saves_on_main():
    """Items 0..9 in spans of 4: [0-3], [4-7], [8-9]. Part 1 is saved, so only parts 0 and 2
    are computed (and their spans built), each result is saved, and results come in order."""
    from star.processes import ALONE, Processes, map_spans

    sliced: list[slice] = []

    class Items(list):
        def __getitem__(self, index):
            if isinstance(index, slice):
                sliced.append(index)
            return super().__getitem__(index)

    items, saved_now = Items(range(10)), {}
    results = map_spans(items, 4, lambda part, span: (part, sum(span)), processes=ALONE,
                        saved=lambda part: (1, -1) if part == 1 else None,
                        save=lambda part, result: saved_now.update({part: result}))
    assert results == [(0, 6), (1, -1), (2, 17)]
    assert sliced == [slice(0, 4), slice(8, 12)]
    assert saved_now == {0: (0, 6), 2: (2, 17)}
    helper = Processes(rank=1, world=1)  # a process other than the main one never saves
    map_spans(items, 4, lambda part, span: part, processes=helper,
              save=lambda part, result: pytest.fail("saved off the main process"))


def test_leave_processes_destroys_the_group_this_process_joined(tmp_path):
    """A gloo group left standing at exit can abort a finished process (seen: rank 1 of a
    launch whose three rounds were done died with SIGABRT, and torchrun failed the launch)."""
    import torch.distributed as dist

    from star.processes import leave_processes

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert dist.is_initialized()
    leave_processes()
    assert not dist.is_initialized()
    leave_processes()  # nothing joined: nothing to leave


def test_star_leaves_the_group_also_when_a_command_fails(monkeypatch, tmp_path):
    import star.tools.cli as cli

    left: list[bool] = []
    monkeypatch.setattr(cli, "leave_processes", lambda: left.append(True))
    assert cli.main(["status", str(tmp_path / "missing")]) == 2
    assert left == [True]
