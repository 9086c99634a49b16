"""The guard replay's variant (docs/label-savings/guard_replay.py): a run's last round scored as
the guard at every round would have handed it out, on hand-made records (no model)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "label-savings" / "guard_replay.py"
_spec = importlib.util.spec_from_file_location("guard_replay", SCRIPT)
guard_replay = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guard_replay)

PROMPT = 0.70


def fit(kept: float, base: float) -> dict:
    """A fit check's record whose one draw scored `kept` on its labels against the base's."""
    return {"metric": "balanced_accuracy", "base": base, "seeds": [0], "draws": [kept],
            "kept": 0, "chance": 0.5}


def rounds(last_f1: float, *, fitted: bool = True) -> list[dict]:
    """A run of two rounds: round 0 guarded (the base model handed out), round 1 past the
    guard, handing out its adapter where it fitted its labels."""
    guarded = {"round": 0, "macro_f1": PROMPT, "fit": fit(1.0, 0.9),
               "guard": {"chosen": "base"}}
    last = {"round": 1, "macro_f1": last_f1, "fit": fit(0.9 if fitted else 0.4, 0.6),
            "guard": None}
    return [guarded, last]


@pytest.mark.parametrize(("chosen", "fitted", "expected"), [
    ("base", True, PROMPT),   # the replay hands the round to the base model: the prompt's score
    ("tuned", True, 0.55),    # the replay keeps the adapter: the run's own score
    ("base", False, 0.55),    # the run handed out the base model already: its record stands
])
def test_the_last_round_is_scored_as_the_replayed_guard_hands_it_out(chosen, fitted, expected):
    run = rounds(0.55, fitted=fitted)
    assert guard_replay.guarded_final(run, {1: chosen}, PROMPT) == expected


def test_a_last_round_that_kept_its_adapter_needs_a_replay():
    with pytest.raises(SystemExit, match="round 1 has no replay"):
        guard_replay.guarded_final(rounds(0.55), {0: "base"}, PROMPT)


def test_the_summary_pairs_each_variant_with_the_prompt(tmp_path, capsys):
    records = tmp_path / "records"
    finals = {0: 0.50, 1: 0.80, 2: 0.60}  # seed -> the run's last macro-F1
    for seed, value in finals.items():
        folder = records / "me" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"rounds": rounds(value)}))
    chosen = {0: "base", 1: "tuned", 2: "base"}  # seed 1's 0.80 kept; the others the prompt's
    replays = tmp_path / "replays.jsonl"
    replays.write_text("".join(
        json.dumps({"run": f"/x/savings-sst2-rare/me/seed{seed}", "round": 1,
                    "guard": {"chosen": which}}) + "\n" for seed, which in chosen.items()))
    guard_replay.summary(records, replays)
    study, every = capsys.readouterr().out.splitlines()
    # the study's guard: (0.50 + 0.80 + 0.60) / 3 = 63.33; − prompt −6.67
    assert study.startswith("me, study's guard: 3 seeds, final macro-F1 63.33, − prompt -6.67")
    # the guard every round: (0.70 + 0.80 + 0.70) / 3 = 73.33; − prompt +3.33
    assert every.startswith("me, guard every round: 3 seeds, final macro-F1 73.33, − prompt +3.33")


def test_the_rounds_table_gives_the_rarest_class_and_the_model_handed_out(tmp_path, capsys):
    records = tmp_path / "records"
    runs = {("random", 0): [{"0": 1, "1": 15}, {"0": 1, "1": 31}],
            ("me", 1): [{"0": 2, "1": 14}, {"0": 5, "1": 27}]}
    for (strategy, seed), counts in runs.items():
        folder = records / strategy / f"seed{seed}"
        folder.mkdir(parents=True)
        run = rounds(0.4)
        for record, count in zip(run, counts, strict=True):
            record["label_counts"] = count
        (folder / "results.json").write_text(json.dumps({"rounds": run}))
    guard_replay.rounds_table(records, ["random", "me"])
    assert capsys.readouterr().out.splitlines() == [
        "| run | 16 | 32 |",
        "|---|---|---|",
        # class "0" is the rarest (1 + 5 labels at the end against 31 + 27); round 0 handed out
        # the base model (B, the prompt's 70.0), round 1 its adapter (T, 40.0)
        "| random 0 | 1 B 70.0 | 1 T 40.0 |",
        "| me 1 | 2 B 70.0 | 5 T 40.0 |",
    ]


def test_the_rounds_table_names_what_it_did_not_find(tmp_path):
    with pytest.raises(SystemExit, match="no finished run of auto"):
        guard_replay.rounds_table(tmp_path, ["auto"])
