"""The label journal: latest answer wins, undo retracts, a crash's torn line is never glued to
the next answer, and a journal that is a link or no regular file is refused, never written
through."""

from __future__ import annotations

import os

import pytest

from star.active.batch import Batch, BatchItem
from star.active.journal import Answer, Journal, annotator_agreement, in_force_of, suggestion_agreement
from star.errors import StarError


def answer(example_id: str, value: str | None, who: str = "ann") -> Answer:
    return Answer(example_id, value, who, 0, source="page", time="t")


def test_latest_wins_and_a_retraction_removes(tmp_path):
    journal = Journal(tmp_path / "labels.jsonl")
    journal.append([answer("a", "1"), answer("b", "0")])
    journal.append([answer("a", "0"), answer("b", None)])
    assert {i: a.value for i, a in journal.latest().items()} == {"a": "0"}
    assert len(journal.answers()) == 4


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    """kill -9 in the middle of a write leaves half a line that was never acknowledged: reading
    skips it, and the next append starts on a fresh line instead of gluing onto it."""
    path = tmp_path / "labels.jsonl"
    journal = Journal(path)
    journal.append([answer("a", "1")])
    with path.open("a") as handle:
        handle.write('{"id": "b", "val')
    assert [a.id for a in journal.answers()] == ["a"]
    journal.append([answer("c", "0")])
    assert [a.id for a in Journal(path).answers()] == ["a", "c"]
    assert path.read_text().count("\n") == 2


def test_agreement_between_annotators_uses_their_latest_answers(tmp_path):
    journal = Journal(tmp_path / "labels.jsonl")
    journal.append([answer("a", "1", "x"), answer("b", "1", "x"), answer("a", "1", "y"),
                    answer("b", "0", "y"), answer("b", "1", "y")])  # y changes b: both agree
    [pair] = annotator_agreement(journal)
    assert pair == {"annotators": ["x", "y"], "examples": 2, "kappa": 1.0}


def test_a_journal_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path):
    """A shared run folder could hold labels.jsonl -> someone else's file: star must neither
    write through the link nor let the torn-tail repair cut the target."""
    victim = tmp_path / "notes.txt"
    victim.write_text("line one\nhalf a line")  # no final newline: what the repair would cut
    path = tmp_path / "labels.jsonl"
    path.symlink_to(victim)
    journal = Journal(path)
    for action in (lambda: journal.append([answer("a", "1")]), journal.answers):
        with pytest.raises(StarError, match=f"^{path}: the label journal is a symbolic link"):
            action()
    assert victim.read_text() == "line one\nhalf a line"


def test_a_dangling_link_is_refused_not_created_through(tmp_path):
    target = tmp_path / "elsewhere.jsonl"
    (tmp_path / "labels.jsonl").symlink_to(target)
    with pytest.raises(StarError, match="symbolic link or not a regular file"):
        Journal(tmp_path / "labels.jsonl").append([answer("a", "1")])
    with pytest.raises(StarError, match="symbolic link or not a regular file"):
        Journal(tmp_path / "labels.jsonl").answers()
    assert not target.exists()


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir], ids=["fifo", "folder"])
def test_a_journal_that_is_not_a_regular_file_is_refused(tmp_path, make):
    """A FIFO would block the page's reads for ever; neither can hold a journal."""
    path = tmp_path / "labels.jsonl"
    make(path)
    journal = Journal(path)
    for action in (lambda: journal.append([answer("a", "1")]), journal.answers):
        with pytest.raises(StarError, match=f"^{path}: the label journal is .* not a regular file"):
            action()


def test_agreement_with_the_suggestion_counts_the_answers_in_force():
    items = [BatchItem(f"e{i}", {}, "", suggestion, 0.9) for i, suggestion in enumerate("1101")]
    batch = Batch(2, items, ["0", "1"])
    journal_lines = [answer("e0", "1"), answer("e1", "1"), answer("e1", "0"), answer("e2", "0"),
                     answer("e3", "1"), answer("e3", None), answer("x9", "1")]
    # in force: e0=1 (agrees), e1=0 (the later answer; suggestion 1), e2=0 (agrees); e3 retracted,
    # x9 is not in the batch: 2 of 3
    assert suggestion_agreement(batch, in_force_of(journal_lines)) == {
        "answered": 3, "agreeing": 2, "rate": pytest.approx(2 / 3)}
    assert suggestion_agreement(batch, {}) is None
    drafts = Batch(2, [BatchItem("q", {}, "", "The sum is 2", 0.5)])
    assert suggestion_agreement(drafts, {"q": answer("q", "The sum is 2.")})["agreeing"] == 0
