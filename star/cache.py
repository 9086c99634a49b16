"""On-disk cache of the base model's uncertainty μ_b, per example id.

μ_b does not change over rounds, strategies or seeds, so it is computed once for a given
(model, task, measure, scoring settings) and only missing ids are ever computed again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from star.files import write_json


def cache_key(**parts: object) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class BaseScoreCache:
    def __init__(self, folder: Path, key: str) -> None:
        self.path = folder / f"{key}.json"

    def _read(self) -> dict[str, float]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def get(self, ids: Sequence[str], compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Values for `ids`; `compute(missing positions)` fills the gaps and is saved."""
        stored = self._read()
        missing = [i for i, example_id in enumerate(ids) if example_id not in stored]
        if missing:
            values = compute(missing)
            stored.update({ids[i]: float(v) for i, v in zip(missing, values, strict=True)})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, stored)
        return np.array([stored[example_id] for example_id in ids])
