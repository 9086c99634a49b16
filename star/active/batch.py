"""A round's batch: the examples the loop asks annotators to label, with the model's guess.

The loop writes it before it waits for people; the labeling page, the Label Studio export and
the importers read it, and every answer is checked against it before it reaches the journal.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from star.errors import DataError
from star.files import write_json


@dataclass(frozen=True)
class BatchItem:
    id: str
    fields: dict[str, str]
    """The record's fields that the prompt template shows, as the annotator should see them."""
    prompt: str
    """The prompt exactly as the model reads it."""
    suggestion: str
    """The model's answer: a label of the task (choice) or a draft response (generative)."""
    confidence: float
    """The model's confidence in `suggestion`, in [0, 1]."""
    uncertainty: float | None = None
    """The acquisition score that put the example in the batch (None for random picks)."""

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Batch:
    round: int
    items: list[BatchItem]
    labels: list[str] = field(default_factory=list)
    """The task's label set for choice tasks; empty for generative tasks (free text)."""
    display: dict[str, str] = field(default_factory=dict)
    """How each label is shown (its verbalizer words), e.g. {"0": "negative"}."""

    @property
    def generative(self) -> bool:
        return not self.labels

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def check(self, example_id: str, value: str, where: str) -> str:
        """The answer as stored, or a DataError naming `where` (a file:line or 'page')."""
        if example_id not in self.ids:
            raise DataError(f"{where}: id {example_id!r} is not in the batch of round {self.round}")
        return self.stored(example_id, value, where)

    def stored(self, example_id: str, value: str, where: str) -> str:
        """The answer as the journal keeps it: a label given by its words becomes the label,
        a label outside the task's set is refused naming `where`."""
        value = str(value).strip() if not self.generative else str(value)
        if not value.strip():
            raise DataError(f"{where}: empty label for id {example_id!r}")
        if self.labels and value not in self.labels:
            by_words = {words.strip(): label for label, words in self.display.items()}
            if value in by_words:
                return by_words[value]
            allowed = ", ".join(f"{label} ({self.display[label].strip()})" if label in self.display
                                else label for label in self.labels)
            raise DataError(f"{where}: label {value!r} for id {example_id!r} is not one of: {allowed}")
        return value


def save_batch(batch: Batch, path: Path) -> None:
    """One JSON file, written atomically: round, label set, display words, items."""
    write_json(path, {"round": batch.round, "labels": batch.labels, "display": batch.display,
                      "items": [item.row() for item in batch.items]})


def load_batch(path: Path) -> Batch:
    data = json.loads(path.read_text(encoding="utf-8"))
    return Batch(data["round"], [BatchItem(**row) for row in data["items"]], data["labels"],
                 data["display"])
