"""The pool as a memory-mapped Arrow table: the same examples a plain read gives, in order,
read back from the cache without reading the file's records again, rebuilt when the file
changes; views, slices and id lookups agree with a list's."""

from __future__ import annotations

import numpy as np
import pytest

import star.data.sources as sources
from star.config import TaskConfig
from star.data.sources import load_task, read_examples
from star.data.table import ExampleTable, positions_of, select, unanswered_ids
from tests.conftest import write_jsonl

RECORDS = [{"question": "cat dog", "answer": "yes"}, {"question": "red sun", "answer": None},
           {"question": "cat dog", "answer": "yes"}, {"question": "fish é 🐟", "answer": "no"},
           {"id": "x7", "question": "rain", "answer": "no"}]
"""A copy (its id gets #1), an unlabeled row, non-ASCII text and a user id."""


@pytest.fixture
def folder(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", RECORDS)
    write_jsonl(tmp_path / "test.jsonl", [{"question": "cat", "answer": "yes"}])
    return tmp_path


def config(folder) -> TaskConfig:
    return TaskConfig(name="custom", data_dir=str(folder), prompt="Q: {question}\nA:",
                      labels=["yes", "no"])


def test_the_table_holds_what_a_plain_read_gives(folder):
    task = load_task(config(folder))
    plain = list(read_examples(folder / "train.jsonl", sources._custom_format(config(folder)),
                               labeled=False))
    assert isinstance(task.train, ExampleTable)
    assert list(task.train) == plain
    assert [e.fields for e in task.train] == [e.fields for e in plain]  # not in ==
    assert task.train[1].answer is None and task.train[1].response is None
    assert task.train[2].id == task.train[0].id + "#1"
    assert task.train[-1].id == "x7" and task.train[1:3] == plain[1:3]
    with pytest.raises(IndexError):
        task.train[5]


def test_a_second_load_reads_the_cached_table_and_an_edit_rebuilds_it(folder, monkeypatch):
    first = list(load_task(config(folder)).train)
    reader = sources.read_records

    def read_test_file_only(path):
        assert path.name == "test.jsonl", "the pool's file was read again"
        return reader(path)

    with monkeypatch.context() as patch:  # undoing only this: the cache stays the test's own
        patch.setattr(sources, "read_records", read_test_file_only)
        assert list(load_task(config(folder)).train) == first
    write_jsonl(folder / "train.jsonl", [*RECORDS[:3], {"question": "new", "answer": "no"}])
    again = load_task(config(folder)).train
    assert len(again) == 4 and again[3].prompt.startswith("Q: new")


def test_a_bad_record_leaves_no_partial_table_and_the_code_is_in_the_key(folder, monkeypatch):
    """A pool whose last record is broken: the load stops with the line, and the half-written
    table is gone. A change to the code that builds prompts rebuilds the table."""
    from star.data import table
    from star.errors import DataError

    (folder / "train.jsonl").write_text((folder / "train.jsonl").read_text() + '{"question": \n')
    with pytest.raises(DataError, match=r"train\.jsonl:6"):
        load_task(config(folder))
    assert not list(table.table_folder().glob(".*.tmp"))
    write_jsonl(folder / "train.jsonl", RECORDS)
    load_task(config(folder))
    tables = set(table.table_folder().glob("*.arrow"))
    monkeypatch.setattr(table, "_builder_code", lambda: "an edited prompt template")
    load_task(config(folder))
    assert len(set(table.table_folder().glob("*.arrow")) - tables) == 1


def test_views_slices_and_id_lookups_agree_with_a_list(folder):
    table = load_task(config(folder)).train
    plain = list(table)
    ids = [e.id for e in plain]
    view = select(table, [1, 3, 4])
    assert isinstance(view, ExampleTable)
    assert list(view) == [plain[1], plain[3], plain[4]] and list(view.ids()) == [ids[1], ids[3], ids[4]]
    assert list(select(view, [2, 0])) == [plain[4], plain[1]]
    for examples in (table, plain):
        np.testing.assert_array_equal(positions_of(examples, [ids[4], ids[0]]), [4, 0])
    np.testing.assert_array_equal(positions_of(view, [ids[4], ids[1]]), [2, 0])
    with pytest.raises(KeyError):
        positions_of(view, [ids[0]])  # in the table, not in the view



def test_unanswered_ids_come_from_the_answer_column_of_a_table_or_a_view(folder):
    table = load_task(config(folder)).train
    plain = list(table)
    unlabeled = plain[1].id  # the record whose answer is None
    assert unanswered_ids(table) == unanswered_ids(plain) == [unlabeled]
    assert unanswered_ids(select(table, [4, 1, 0])) == [unlabeled]
    assert unanswered_ids(select(table, [0, 2, 3])) == []


def test_pool_memory_measures_a_run_in_a_child_process(tmp_path, tiny_model_dir, monkeypatch,
                                                       capsys):
    """`star bench --pool-sizes`: the synthetic pool, the child's own peak RSS, its rounds (the
    test's tiny model stands in for the default tokenizer's 2-layer model)."""
    import shutil

    from star.tools import pool_memory

    monkeypatch.setattr(pool_memory, "write_small_model",
                        lambda folder: shutil.copytree(tiny_model_dir, folder))
    rows = pool_memory.main([300, 100], tmp_path)
    assert [row["pool"] for row in rows] == [100, 300]
    assert all(50 < row["peak_rss_mb"] < 5000 and row["score_seconds"] > 0 for row in rows)
    assert all(0 < row[part] <= row["peak_rss_mb"] + 1 for row in rows
               for part in ("peak_anon_mb", "peak_file_mb"))  # Linux: sampled, under the mark
    lines = (tmp_path / "pool-300" / "train.tsv").read_text().splitlines()
    assert len(lines) == 301 and lines[0] == "id\tsentence\tlabel"
    assert "peak RSS MB" in capsys.readouterr().out
    assert all((tmp_path / f"cache-{n}" / "tables").is_dir() for n in (100, 300))  # its own
    results = tmp_path / "run-100" / "results.json"
    before = results.stat().st_mtime_ns
    pool_memory.main([100], tmp_path)  # measured again, not resumed from the finished run
    assert results.stat().st_mtime_ns != before
