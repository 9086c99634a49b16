"""The label journal: every human or oracle answer, one JSON line each, never rewritten.

An answer is acknowledged only after its line is flushed and fsynced, so a crash (kill -9,
power loss) never loses an answer the annotator saw accepted. The latest line per id wins;
undo appends a retraction (`value: null`), so the history of every label stays readable.
A torn last line (a crash in the middle of a write) is ignored when read: it was never
acknowledged.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any

from star.active.stopping import cohen_kappa

SOURCES = ("page", "import", "oracle")


def now() -> str:
    """UTC time of an answer, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Answer:
    """One line of the journal. `value` None retracts the id's earlier answer (undo)."""

    id: str
    value: str | None
    annotator: str
    round: int
    source: str
    time: str = ""


class Journal:
    """Append-only JSONL file of answers; safe for the threads of one labeling server."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, answers: list[Answer]) -> None:
        """Write `answers` and return only once they are on disk (flush + fsync)."""
        if not answers:
            return
        text = "".join(json.dumps(asdict(a), ensure_ascii=False) + "\n" for a in answers)
        with self._lock:
            new = not self.path.exists()
            if not new:
                self._cut_torn_tail()
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            if new:  # the file's directory entry must reach the disk too
                folder = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)

    def _cut_torn_tail(self) -> None:
        """Drop what follows the last newline: a write cut short by a crash, never acknowledged.
        Appending after it would glue the next answer to it and make that line unreadable."""
        with self.path.open("rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            handle.truncate(handle.read().rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())

    def answers(self) -> list[Answer]:
        """Every acknowledged answer in the order given."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").split("\n")
        result = []
        for line in lines[:-1]:  # the part after the last newline was never acknowledged
            if line.strip():
                result.append(Answer(**json.loads(line)))
        return result

    def latest(self) -> dict[str, Answer]:
        """The answer in force per id: the last line wins; a retraction removes the id."""
        current: dict[str, Answer] = {}
        for answer in self.answers():
            if answer.value is None:
                current.pop(answer.id, None)
            else:
                current[answer.id] = answer
        return current


def annotator_agreement(journal: Journal) -> list[dict[str, Any]]:
    """Cohen's κ between each pair of annotators over the ids both answered, from each one's
    latest answer (an answer retracted counts as none): [{annotators, examples, kappa}]."""
    latest: dict[str, dict[str, str]] = defaultdict(dict)
    for answer in journal.answers():
        if answer.value is None:
            latest[answer.annotator].pop(answer.id, None)
        else:
            latest[answer.annotator][answer.id] = answer.value
    pairs = []
    for first, second in combinations(sorted(latest), 2):
        shared = sorted(latest[first].keys() & latest[second].keys())
        if shared:
            pairs.append({"annotators": [first, second], "examples": len(shared),
                          "kappa": cohen_kappa([latest[first][i] for i in shared],
                                               [latest[second][i] for i in shared])})
    return pairs
