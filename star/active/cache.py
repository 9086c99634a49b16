"""On-disk cache of the base model's uncertainty μ_b.

μ_b does not change over rounds, strategies or seeds, so it is computed once per setup and
read back afterwards. A cached value is served only when everything it was computed from is
the same: the setup key covers the model's weight and tokenizer files (a content fingerprint,
not the name), the dtype, the length limit, the measure and `SCORING_VERSION`; the entry key
covers the example's rendered prompt and gold response, so an edited row is scored afresh.
An unreadable file or entry is discarded with one warning line and recomputed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from star.data.table import select
from star.data.tasks import Example
from star.files import cache_root, digest, write_text_atomic
from star.processes import ALONE, Processes, map_parts
from star.progress import log

SCORING_VERSION = 2
"""Raise when a change to the scoring code changes the numbers it computes."""


def entry_key(example: Example) -> str:
    """What a base score depends on in the example: the text the model reads and scores."""
    return digest([example.prompt, example.response, example.gold])


def base_score_folder() -> Path:
    """Where μ_b caches live: `base_scores` under the cache root (`STAR_CACHE_DIR`)."""
    return cache_root() / "base_scores"


class BaseScoreCache:
    """μ_b per example for one setup: a JSONL file, each line an object {entry key: value}
    holding one part of a pass, appended (and fsynced) as soon as the part is computed, so a
    pass over a large pool that is killed keeps what it finished."""

    def __init__(self, folder: Path, setup: dict[str, Any]) -> None:
        self.path = folder / f"{digest({**setup, 'scoring_version': SCORING_VERSION})}.jsonl"

    def read(self, *, mend: bool = True) -> dict[str, float]:
        """Every good entry. Bad lines or values (a torn write, an edited file) are dropped
        with one warning and, with `mend`, the file is rewritten without them."""
        if not self.path.exists():
            return {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = ["unreadable"]
        good: dict[str, float] = {}
        bad = 0
        for line in lines:
            try:
                stored = json.loads(line)
            except json.JSONDecodeError:
                stored = None
            if not isinstance(stored, dict):
                bad += 1
                continue
            for key, value in stored.items():
                if isinstance(value, int | float) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    good[key] = float(value)
                else:
                    bad += 1
        if bad:
            log(f"warning: base-score cache '{self.path}': {bad} bad lines or entries "
                "discarded; they are computed again")
        if bad and mend:
            write_text_atomic(self.path, json.dumps(good) + "\n" if good else "")
        return good

    def append(self, values: dict[str, float]) -> None:
        """Add one part's entries as one line, on disk before this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(values) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def get(self, examples: Sequence[Example], compute: Callable[[list[Example]], np.ndarray], *,
            part_size: int, processes: Processes = ALONE) -> np.ndarray:
        """Values for `examples`; `compute(examples)` fills the gaps part by part (split between
        `processes`), and each part is saved as it is done."""
        stored = self.read(mend=processes.main)
        keys = [entry_key(e) for e in examples]
        missing = sorted({key: i for i, key in enumerate(keys) if key not in stored}.values())
        parts = [missing[at:at + part_size] for at in range(0, len(missing), part_size)]

        def save(part: int, values: np.ndarray) -> None:
            self.append({keys[i]: float(v) for i, v in zip(parts[part], values, strict=True)})

        computed = map_parts(len(parts), lambda part: compute(list(select(examples, parts[part]))),
                             processes=processes, saved=lambda part: None, save=save)
        for part, values in zip(parts, computed, strict=True):
            stored.update({keys[i]: float(v) for i, v in zip(part, values, strict=True)})
        return np.array([stored[key] for key in keys])
