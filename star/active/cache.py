"""On-disk cache of the base model's uncertainty μ_b.

μ_b does not change over rounds, strategies or seeds, so it is computed once per setup and
read back afterwards. A cached value is served only when everything it was computed from is
the same: the setup key covers the model's weight and tokenizer files (a content fingerprint,
not the name), the hardware, the attention kernel, the dtype, the length limit, the measure
and `SCORING_VERSION`; the entry key
covers the example's rendered prompt and gold response, so an edited row is scored afresh.
An unreadable file or entry is discarded with one warning line and recomputed.

What the key cannot hold is the batch an entry was computed in: padding changes the order of
float sums, so the same example scored beside other examples can differ in the 7th digit. An
entry keeps its first value, so every run that reads it sees the same number.
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
from star.files import atomic_file, cache_root, digest
from star.processes import ALONE, Processes, map_spans
from star.progress import log

SCORING_VERSION = 3
"""Raise when a change to the scoring code changes the numbers it computes."""


def entry_key(example: Example) -> str:
    """What a base score depends on in the example: the text the model reads and scores,
    hashed to 64 bits (16 hex digits), the size of a key held in memory."""
    return digest([example.prompt, example.response, example.gold])[:16]


def base_score_folder() -> Path:
    """Where μ_b caches live: `base_scores` under the cache root (`STAR_CACHE_DIR`)."""
    return cache_root() / "base_scores"


class BaseScoreCache:
    """μ_b per example for one setup: a JSONL file, each line an object {entry key: value}
    holding one part of a pass, appended (and fsynced) as soon as the part is computed, so a
    pass over a large pool that is killed keeps what it finished. In memory the entries are
    two sorted arrays (64-bit keys, values): 16 bytes an entry, where a dictionary of strings
    took about 200 (measured at a million, docs/performance.md)."""

    def __init__(self, folder: Path, setup: dict[str, Any]) -> None:
        self.path = folder / f"{digest({**setup, 'scoring_version': SCORING_VERSION})}.jsonl"

    def read(self, *, mend: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Every good entry as (sorted keys, values). Bad lines or values (a torn write, an
        edited file) are dropped with one warning and, with `mend`, the file is rewritten
        without them."""
        keys, values, bad = [np.zeros(0, np.uint64)], [np.zeros(0)], 0
        try:
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    part_keys, part_values, part_bad = _parse(line)
                    keys.append(part_keys)
                    values.append(part_values)
                    bad += part_bad
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError):
            bad += 1
        all_keys, first = np.unique(np.concatenate(keys), return_index=True)
        all_values = np.concatenate(values)[first]
        if bad:
            log(f"warning: base-score cache '{self.path}': {bad} bad lines or entries "
                "discarded; they are computed again")
        if bad and mend:
            with atomic_file(self.path) as handle:
                for at in range(0, len(all_keys), ENTRIES_PER_LINE):
                    handle.write(_line(all_keys[at:at + ENTRIES_PER_LINE],
                                       all_values[at:at + ENTRIES_PER_LINE]))
        return all_keys, all_values

    def append(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add one part's entries as one line, on disk before this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(_line(keys, values))
            handle.flush()
            os.fsync(handle.fileno())

    def get(self, examples: Sequence[Example], compute: Callable[[list[Example]], np.ndarray], *,
            part_size: int, processes: Processes = ALONE) -> np.ndarray:
        """Values for `examples`; `compute(examples)` fills the gaps part by part (split between
        `processes`), and each part is saved as it is done."""
        stored_keys, stored_values = self.read(mend=processes.main)
        wanted = np.fromiter((int(entry_key(e), 16) for e in examples), np.uint64, len(examples))
        result, found = _look_up(wanted, stored_keys, stored_values)
        absent = np.flatnonzero(~found)
        missing = np.sort(absent[np.unique(wanted[absent], return_index=True)[1]])
        parts = [missing[at:at + part_size] for at in range(0, len(missing), part_size)]

        def save(part: int, values: np.ndarray) -> None:
            self.append(wanted[parts[part]], values)

        computed = map_spans(select(examples, missing), part_size,
                             lambda part, span: compute(span), processes=processes, save=save)
        if parts:
            new_keys = wanted[np.concatenate(parts)]
            order = np.argsort(new_keys)
            filled, _ = _look_up(wanted[absent], new_keys[order],
                                 np.concatenate(computed).astype(float)[order])
            result[absent] = filled
        return result


ENTRIES_PER_LINE = 4096
"""Entries per line when a damaged file is written again."""


def _line(keys: np.ndarray, values: np.ndarray) -> str:
    return json.dumps({f"{int(k):016x}": float(v) for k, v in zip(keys, values, strict=True)}) + "\n"


def _parse(line: str) -> tuple[np.ndarray, np.ndarray, int]:
    """One line's good entries (keys, values) and how many were bad (a bad line counts 1)."""
    try:
        stored = json.loads(line)
    except json.JSONDecodeError:
        stored = None
    if not isinstance(stored, dict):
        return np.zeros(0, np.uint64), np.zeros(0), 1
    good = [(key, value) for key, value in stored.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and _is_key(key)]
    keys = np.fromiter((int(key, 16) for key, _ in good), np.uint64, len(good))
    return keys, np.array([float(value) for _, value in good]), len(stored) - len(good)


def _is_key(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


def _look_up(wanted: np.ndarray, keys: np.ndarray,
             values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of `wanted` keys in sorted `keys` (NaN where absent) and which were found."""
    at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    found = (keys[at] == wanted) if len(keys) else np.zeros(len(wanted), bool)
    return np.where(found, values[at] if len(keys) else np.nan, np.nan), found
