"""On-disk cache of the base model's uncertainty μ_b.

μ_b does not change over rounds, strategies or seeds, so it is computed once per setup and
read back afterwards. A cached value is served only when everything it was computed from is
the same: the setup key covers the model's weight and tokenizer files (a content fingerprint,
not the name), the dtype, the length limit, the measure and `SCORING_VERSION`; the entry key
covers the example's rendered prompt and gold response, so an edited row is scored afresh.
An unreadable file or entry is discarded with one warning line and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from star.data.tasks import Example
from star.errors import ConfigError
from star.files import cache_root, write_json
from star.progress import log

SCORING_VERSION = 2
"""Raise when a change to the scoring code changes the numbers it computes."""


def digest(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def entry_key(example: Example) -> str:
    """What a base score depends on in the example: the text the model reads and scores."""
    return digest([example.prompt, example.response, example.gold])


def base_score_folder() -> Path:
    """Where μ_b caches live: `base_scores` under the cache root (`STAR_CACHE_DIR`)."""
    return cache_root() / "base_scores"


def check_cache_folder(folder: Path) -> None:
    """Exit-2 error now, not a traceback rounds later, when the cache folder is unusable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cache folder '{folder}' is not usable ({exc.strerror}); "
                          "set STAR_CACHE_DIR to a writable folder") from None


class BaseScoreCache:
    """μ_b per example for one setup, in one JSON file {entry key: value}."""

    def __init__(self, folder: Path, setup: dict[str, Any]) -> None:
        self.path = folder / f"{digest({**setup, 'scoring_version': SCORING_VERSION})}.json"

    def _read(self) -> dict[str, float]:
        if not self.path.exists():
            return {}
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log(f"warning: base-score cache '{self.path}' is unreadable; recomputing it")
            return {}
        if not isinstance(stored, dict):
            log(f"warning: base-score cache '{self.path}' is not a mapping; recomputing it")
            return {}
        good = {key: float(value) for key, value in stored.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value)}
        if len(good) < len(stored):
            log(f"warning: base-score cache '{self.path}': {len(stored) - len(good)} bad "
                "entries discarded and recomputed")
        return good

    def get(self, examples: Sequence[Example],
            compute: Callable[[list[Example]], np.ndarray]) -> np.ndarray:
        """Values for `examples`; `compute(missing examples)` fills the gaps, which are saved."""
        stored = self._read()
        keys = [entry_key(e) for e in examples]
        missing = [i for i, key in enumerate(keys) if key not in stored]
        if missing:
            values = compute([examples[i] for i in missing])
            stored.update({keys[i]: float(v) for i, v in zip(missing, values, strict=True)})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, stored)
        return np.array([stored[key] for key in keys])
