"""The label journal: every human or oracle answer, one JSON line each, never rewritten.

An answer is acknowledged only after its line is flushed and fsynced, so a crash (kill -9,
power loss) never loses an answer the annotator saw accepted. The latest line per id wins;
undo appends a retraction (`value: null`), so the history of every label stays readable.
A torn last line (a crash in the middle of a write) is ignored when read: it was never
acknowledged. Writers hold an exclusive lock on the file (the page's threads, `star import`
and the loop may append at once), so no writer cuts or interleaves another's line.
The journal is opened without following a symbolic link and only if it is a regular file:
in a shared run folder, a link could otherwise make star's torn-tail repair cut another file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any, BinaryIO

from star.active.batch import Batch
from star.active.stopping import cohen_kappa
from star.errors import DataError, StarError
from star.files import fsync_folder

SOURCES = ("page", "import", "oracle", "labelstudio")


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
    ref: str | None = None
    """The answer's key in the tool it came from, where it has one (a Label Studio annotation,
    `<project>/<annotation id>`): a watcher restarted after a crash journals each one once.
    Lines without one leave it out."""

    def line(self) -> str:
        record = asdict(self)
        if self.ref is None:
            del record["ref"]
        return json.dumps(record, ensure_ascii=False) + "\n"


class Journal:
    """Append-only JSONL file of answers; safe for threads and processes that write at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, answers: list[Answer]) -> None:
        """Write `answers` and return only once they are on disk (flush + fsync)."""
        if not answers:
            return
        text = "".join(answer.line() for answer in answers)
        new = not self.path.exists()
        with os.fdopen(self._open(os.O_RDWR | os.O_APPEND | os.O_CREAT), "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
            _cut_torn_tail(handle)
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if new:  # the file's directory entry must reach the disk too
            fsync_folder(self.path.parent)

    def answers(self) -> list[Answer]:
        """Every acknowledged answer in the order given; a damaged line is named, not skipped."""
        try:
            descriptor = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return []
        with os.fdopen(descriptor, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
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

    def _open(self, flags: int) -> int:
        """A descriptor of the journal itself, never of what a link points to; refused unless it
        is a regular file (a FIFO would block a reader, a device would swallow answers)."""
        try:  # O_NONBLOCK: opening a FIFO to read must not wait for a writer
            descriptor = os.open(self.path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as error:
            if error.errno not in (errno.ELOOP, errno.EISDIR):
                raise
            raise self._not_a_file() from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise self._not_a_file()
        return descriptor

    def _not_a_file(self) -> StarError:
        return StarError(f"{self.path}: the label journal is a symbolic link or not a regular file; "
                         "star reads and appends only to the journal file itself, so that it never "
                         "writes through a link into another file (put the file itself there)")

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


def suggestion_agreement(batch: Batch, answers: Mapping[str, Answer]) -> dict[str, Any] | None:
    """How often the answers in force for `batch`'s examples equal the model's suggestion: the
    label it guessed, or its draft left unedited. On the uncertain examples a round picks, a
    rate near 1 hints that annotators follow the suggestion (anchoring); a blind round
    (`loop.blind_labeling`) gives the rate without it. `answers` maps id to the answer in
    force (`Journal.latest`); None when no example of the batch has one."""
    answered = [item for item in batch.items if item.id in answers]
    if not answered:
        return None
    agreeing = sum(answers[item.id].value == item.suggestion for item in answered)
    return {"answered": len(answered), "agreeing": agreeing, "rate": agreeing / len(answered)}
