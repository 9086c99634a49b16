"""Who answers a round's batch: the oracle (the pool's own answers, a simulation) or people
(the labeling page, imports). Both write to the label journal and the loop reads only the
journal, so a simulated and a real run go through one code path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from star.active.batch import Batch
from star.active.journal import Answer, Journal, now
from star.data.table import unanswered_ids
from star.data.tasks import Example
from star.errors import ConfigError


class Annotator(Protocol):
    def answer(self, batch: Batch, examples: dict[str, Example], journal: Journal) -> None:
        """Answer what it can of `batch` into `journal`; people answer later, elsewhere."""


class Oracle:
    """Answers every example with the answer its record carries."""

    def answer(self, batch: Batch, examples: dict[str, Example], journal: Journal) -> None:
        answered = journal.latest()
        journal.append([Answer(i, examples[i].answer, "oracle", batch.round, source="oracle", time=now())
                        for i in batch.ids if i not in answered])


class People:
    """Answers come from the labeling page or from imported files, on their own time."""

    def answer(self, batch: Batch, examples: dict[str, Example], journal: Journal) -> None:
        return None


def make_annotator(kind: str, pool: Sequence[Example]) -> Annotator:
    if kind == "people":
        return People()
    unlabeled = unanswered_ids(pool)
    if unlabeled:
        raise ConfigError(f"the pool has {len(unlabeled)} examples without an answer (e.g. id "
                          f"{unlabeled[0]!r}); the oracle annotator needs every one labeled: "
                          "set loop.annotator=people to label them yourself")
    return Oracle()
