"""The run folder: the one place that knows its layout and the schema of its files.

```
config.yaml                  the resolved config (written once the model and data loaded)
results.json                 the rounds so far, appended when a round is complete
labels.jsonl                 the label journal (append-only, see `journal.py`)
labelstudio.json             the Label Studio project the run labels in: url, project
rounds/<k>/batch.json        the examples round k asks annotators to label
rounds/<k>/scoring/<p>.npz   the scoring pass's finished parts, until the batch is written
rounds/<k>/scoring/<arm>/    `auto`: each arm's pass's parts, likewise (a shortlist's in its first/)
rounds/<k>/scoring/first/    with a shortlist (`selection.shortlist`): its one pass over the pool
rounds/<k>/scores.jsonl      before round k's selection: id, base, passes, full, score, selected;
                             `auto`: id, score (a pick's q: the chance its draw chose it; 0
                             for the others), selected, and a pick's arm
rounds/<k>/adapter/          the adapter round k hands out (PEFT save_pretrained)
rounds/<k>/trained_adapter/  the adapter round k trained where it handed out the base model
                             (`guard.select_with: trained`); `loop.keep_adapters: last` keeps
                             both only for the last complete round
rounds/<k>/predictions.jsonl id, prediction, gold, correct, confidence
rounds/<k>/noise.json        `star noise`: round k's labels retrained under other training seeds
base_hidden/<p>.npz          typiclust: the base model's hidden states over the pool, by part
.lock                        held by the process working in the folder
```
Every file is written atomically; a round is complete only once results.json lists it.
When several processes run one loop, each opens the folder and only the main one writes
(`writes`): the others' write calls do nothing, and they read what the main one wrote.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from star.active.batch import Batch, load_batch, save_batch
from star.active.journal import Journal
from star.active.strategies import Scores
from star.config import read_yaml
from star.errors import ConfigError, DataError
from star.files import (
    iter_jsonl,
    make_folder,
    read_arrays,
    read_jsonl,
    remove_stale_partials,
    write_arrays,
    write_json,
    write_jsonl,
    write_text_atomic,
)

LOCK_PATIENCE = 2.0
"""Seconds `lock` waits for the folder: a labeling page holds it shared for a moment per answer."""


def _flock(handle: IO[str], mode: int, *, patience: float) -> bool:
    """Take an flock of `mode` on `handle`, trying for up to `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


class RunFolder:
    def __init__(self, root: Path, *, writes: bool = True) -> None:
        self.root = Path(root)
        self.writes = writes
        self.config_path = self.root / "config.yaml"
        self.results_path = self.root / "results.json"
        self.journal = Journal(self.root / "labels.jsonl")
        self.labelstudio_path = self.root / "labelstudio.json"

    # -- layout -------------------------------------------------------------------------------
    def round_dir(self, k: int) -> Path:
        return self.root / "rounds" / str(k)

    def adapter_dir(self, k: int) -> Path:
        return self.round_dir(k) / "adapter"

    def trained_adapter_dir(self, k: int) -> Path:
        """The adapter round k trained where it handed out the base model instead, kept to pick
        the next batch (`guard.select_with: trained`)."""
        return self.round_dir(k) / "trained_adapter"

    def saved_adapter(self, k: int) -> Path:
        """Round k's adapter folder, or a `DataError` saying why it may be missing."""
        folder = self.adapter_dir(k)
        if not folder.is_dir():
            raise DataError(f"round {k}'s adapter '{folder}' is missing: deleted (a run under "
                            "loop.keep_adapters: last keeps only its last round's) or not "
                            "copied with the run's records")
        return folder

    def drop_adapters(self, before: int) -> None:
        """Delete the adapters of the rounds before `before` (`loop.keep_adapters: last`), each
        of them, so that one left by a stop between a round's record and this call goes too."""
        if not self.writes:
            return
        for k in range(before):
            for folder in (self.adapter_dir(k), self.trained_adapter_dir(k)):
                shutil.rmtree(folder, ignore_errors=True)

    def batch_path(self, k: int) -> Path:
        return self.round_dir(k) / "batch.json"

    def scores_path(self, k: int) -> Path:
        return self.round_dir(k) / "scores.jsonl"

    def scoring_parts(self, k: int, arm: str | None = None) -> ScoringParts:
        """Round k's scoring pass's parts; `auto`'s `arm`'s apart, below them (a part's key is
        its examples' ids, the same for every arm)."""
        folder = self.round_dir(k) / "scoring"
        return ScoringParts(folder / arm if arm else folder, writes=self.writes)

    def base_hidden_parts(self) -> ScoringParts:
        """The base model's hidden states over the pool (typiclust): the same every round, kept
        so that a resumed run clusters the very floats it clustered before."""
        return ScoringParts(self.root / "base_hidden", writes=self.writes)

    def predictions_path(self, k: int) -> Path:
        return self.round_dir(k) / "predictions.jsonl"

    def scored_rounds(self) -> list[int]:
        """Rounds that wrote acquisition scores, in order."""
        folder = self.root / "rounds"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir()
                      if p.name.isdigit() and (p / "scores.jsonl").exists())

    # -- creating and locking -----------------------------------------------------------------
    def create(self) -> None:
        """Make the folder, or say in one line why it cannot be made."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out '{self.root}' is a file, not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run folder '{self.root}': {exc.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ConfigError(f"run folder '{self.root}' is not writable")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process; a second process gets one line naming the first.
        A process that does not write holds nothing (its main process holds the lock)."""
        if not self.writes:
            yield
            return
        path = self.root / ".lock"
        handle = path.open("a+")
        if not _flock(handle, fcntl.LOCK_EX, patience=LOCK_PATIENCE):
            handle.seek(0)
            holder = f"process {handle.read().strip() or '(unknown)'}"
            if _flock(handle, fcntl.LOCK_SH, patience=0.0):  # shared: .lock names an old pid
                holder = "a labeling page writing an answer"
            handle.close()
            raise ConfigError(f"run folder '{self.root}' is in use by {holder}; "
                              "wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        remove_stale_partials(self.root)  # left by a process killed mid-write
        try:
            yield
        finally:
            handle.close()

    @contextmanager
    def shared(self) -> Iterator[bool]:
        """Yields whether the folder is free (no `star run` or `star next`, which may be
        training on the waiting batch's answers, holds it) and, when it is, keeps `lock` from
        taking it until the block ends: an answer checked against a free folder is written
        before a round can read the journal."""
        with (self.root / ".lock").open("a+") as handle:
            yield _flock(handle, fcntl.LOCK_SH, patience=0.0)

    # -- config and results -------------------------------------------------------------------
    def started(self) -> bool:
        """Whether a run has written anything beyond its config here."""
        return self.results_path.exists() or (self.root / "rounds").exists()

    def read_config(self) -> dict[str, Any] | None:
        """The saved config as a tree, None when there is none yet."""
        if not self.config_path.exists():
            return None
        try:
            tree = read_yaml(self.config_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"'{self.config_path}' is not valid YAML ({exc}); restore it (the "
                              "config the run started with), or choose another --out") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"'{self.config_path}' is empty or not a mapping; restore it (the "
                              "config the run started with), or choose another --out")
        return tree

    def write_config(self, text: str) -> None:
        if not self.writes:
            return
        write_text_atomic(self.config_path, text)

    def read_results(self) -> dict[str, Any] | None:
        if not self.results_path.exists():
            return None
        try:
            return json.loads(self.results_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"'{self.results_path}' is not valid JSON ({exc})") from None

    def write_results(self, results: dict[str, Any]) -> None:
        if not self.writes:
            return
        write_json(self.results_path, results)

    # -- per-round files ----------------------------------------------------------------------
    def write_scores(self, k: int, ids: Iterable[str], scores: Scores, picked: set[int], *,
                     arms: Mapping[int, str] | None = None) -> None:
        """One row per unlabeled example: id, base (μ_b), passes (μ_f per pass), full (their
        mean), score (what was ranked), selected, and with `arms` (`auto`) a pick's arm."""
        if not self.writes:
            return
        def rows() -> Iterator[dict[str, Any]]:
            for i, example_id in zip(range(len(scores.score)), ids, strict=True):
                row: dict[str, Any] = {"id": example_id}
                if scores.base is not None:
                    row["base"] = float(scores.base[i])
                if scores.passes is not None:
                    row["passes"] = [float(v) for v in scores.passes[:, i]]
                    row["full"] = float(scores.full[i])
                row["score"] = float(scores.score[i])
                row["selected"] = i in picked
                if arms is not None and i in arms:
                    row["arm"] = arms[i]
                yield row

        make_folder(self.round_dir(k))
        write_jsonl(self.scores_path(k), rows())

    def read_scores(self, k: int) -> list[dict[str, Any]]:
        return read_jsonl(self.scores_path(k))

    def iter_scores(self, k: int) -> Iterator[dict[str, Any]]:
        """Round k's score rows one at a time (a large pool's rows are not held at once)."""
        return iter_jsonl(self.scores_path(k))

    def write_predictions(self, k: int, rows: list[dict[str, Any]]) -> None:
        if not self.writes:
            return
        make_folder(self.round_dir(k))
        write_jsonl(self.predictions_path(k), rows)

    def read_predictions(self, k: int) -> list[dict[str, Any]] | None:
        path = self.predictions_path(k)
        return read_jsonl(path) if path.exists() else None

    def noise_path(self, k: int) -> Path:
        return self.round_dir(k) / "noise.json"

    def write_noise(self, k: int, record: dict[str, Any]) -> None:
        """round, n_labeled, test_size, run_accuracy, run_macro_f1, retrains: [{training_seed,
        accuracy, macro_f1}]."""
        if not self.writes:
            return
        write_json(self.noise_path(k), record)

    def read_noise(self, k: int) -> dict[str, Any] | None:
        path = self.noise_path(k)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_batch(self, batch: Batch) -> None:
        if not self.writes:
            return
        make_folder(self.round_dir(batch.round))
        save_batch(batch, self.batch_path(batch.round))

    def read_batch(self, k: int) -> Batch | None:
        path = self.batch_path(k)
        return load_batch(path) if path.exists() else None

    def pending_batch(self) -> Batch | None:
        """The batch of the round after the last complete one, if it was written."""
        results = self.read_results()
        return self.read_batch(len(results["rounds"]) if results else 0)


class ScoringParts:
    """A scoring pass's finished parts, one .npz each, so a killed pass resumes where it
    stopped. Each part carries the key of what it scored (its examples' ids); a part with
    another key or an unreadable file is computed again."""

    def __init__(self, folder: Path, *, writes: bool = True) -> None:
        self.folder = folder
        self.writes = writes

    def path(self, part: int) -> Path:
        return self.folder / f"{part:06d}.npz"

    def read(self, part: int, key: str) -> dict[str, np.ndarray] | None:
        arrays = read_arrays(self.path(part)) if self.path(part).exists() else None
        if arrays is None or str(arrays.pop("key", "")) != key:
            return None
        return arrays

    def write(self, part: int, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.writes:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_arrays(self.path(part), {**arrays, "key": np.array(key)})

    def first_pass(self) -> ScoringParts:
        """Where a shortlisted pass keeps its one pass over the whole pool, below its own parts
        (cleared with them)."""
        return ScoringParts(self.folder / "first", writes=self.writes)

    def clear(self) -> None:
        """Drop the parts once the pass's outcome (scores.jsonl and the batch) is written."""
        if self.writes:
            shutil.rmtree(self.folder, ignore_errors=True)


def new_results(**fields: Any) -> dict[str, Any]:
    """The results.json of a run that has not finished a round yet."""
    return {**fields, "auc": None, "rounds": []}


def complete_rounds(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a run's complete rounds, in order (the list itself: the loop appends)."""
    return results["rounds"]


def find_runs(root: Path) -> list[RunFolder]:
    """Every run folder below `root` (those holding results.json)."""
    return [RunFolder(path.parent) for path in sorted(Path(root).rglob("results.json"))]

