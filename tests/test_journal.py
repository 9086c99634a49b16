"""The label journal: latest answer wins, undo retracts, a crash's torn line is never glued to
the next answer."""

from __future__ import annotations

from star.active.journal import Answer, Journal, annotator_agreement


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
