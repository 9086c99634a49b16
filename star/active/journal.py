"""The label journal: every human or oracle answer, one JSON line each, never rewritten.

An answer is acknowledged only after its line is flushed and fsynced, so a crash (kill -9,
power loss) never loses an answer the annotator saw accepted. The latest line per id wins;
undo appends a retraction (`value: null`), so the history of every label stays readable.
A torn last line (a crash in the middle of a write) is ignored when read: it was never
acknowledged. Writers hold an exclusive lock on the file (the page's threads, `star import`
and the loop may append at once), so no writer cuts or interleaves another's line.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any, BinaryIO

from star.active.stopping import cohen_kappa
from star.errors import DataError
from star.files import fsync_folder

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
    """Append-only JSONL file of answers; safe for threads and processes that write at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, answers: list[Answer]) -> None:
        """Write `answers` and return only once they are on disk (flush + fsync)."""
        if not answers:
            return
        text = "".join(json.dumps(asdict(a), ensure_ascii=False) + "\n" for a in answers)
        new = not self.path.exists()
        with self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
            _cut_torn_tail(handle)
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if new:  # the file's directory entry must reach the disk too
            fsync_folder(self.path.parent)

    def answers(self) -> list[Answer]:
        """Every acknowledged answer in the order given; a damaged line is named, not skipped."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").split("\n")
        result = []
        for number, line in enumerate(lines[:-1], start=1):  # after the last newline: never acknowledged
            if not line.strip():
                continue
            try:
                result.append(Answer(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise DataError(f"{self.path}:{number}: not a journal line ({exc}); the journal is "
                                "only ever appended to by star, so this line was edited by hand") from None
        return result

    def latest(self) -> dict[str, Answer]:
        """The answer in force per id: the last line wins; a retraction removes the id."""
        return in_force_of(self.answers())

    def in_force(self, ids: list[str]) -> dict[str, Answer]:
        """The answers in force for `ids`, examples a round trains on, each of which has one.

        Writers refuse to touch the ids of finished rounds, so one without an answer means the
        journal was changed behind star's back (or by a write racing the end of a round); the
        run cannot then replay what it trained on, and names the id instead of a KeyError.
        """
        answered = self.latest()
        missing = [i for i in ids if i not in answered]
        if missing:
            raise DataError(f"{self.path}: {len(missing)} labeled examples have no answer in force "
                            f"(first: {missing[0]!r}): their answers were retracted after a round "
                            "trained on them, so the run cannot replay its rounds")
        return {i: answered[i] for i in ids}


def in_force_of(answers: list[Answer]) -> dict[str, Answer]:
    """The answer in force per id of journal lines already read (see `Journal.latest`)."""
    current: dict[str, Answer] = {}
    for answer in answers:
        if answer.value is None:
            current.pop(answer.id, None)
        else:
            current[answer.id] = answer
    return current


def _cut_torn_tail(handle: BinaryIO) -> None:
    """Drop what follows the last newline: a write cut short by a crash, never acknowledged.
    Appending after it would glue the next answer to it and make that line unreadable."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    handle.seek(0)
    handle.truncate(handle.read().rfind(b"\n") + 1)


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
