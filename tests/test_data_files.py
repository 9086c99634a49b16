"""Reading data files (what the csv module cannot parse, long fields, upper-case suffixes),
encoding a prompt cut to fit, label words a tokenizer splits, and folders made durably."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from star import files
from star.data.batching import Encoded, encode
from star.data.readers import read_records
from star.data.tasks import Example, Task
from star.errors import DataError
from star.model.passes import split_label_words


@pytest.mark.parametrize(("name", "text"), [("f.csv", "review,label\nok,1\nbad\rline,0\n"),
                                            ("f.tsv", "review\tlabel\nok\t1\nbad\rline\t0\n")])
def test_what_the_csv_module_refuses_names_file_and_line(tmp_path, name, text):
    (tmp_path / name).write_bytes(text.encode())  # a carriage return alone inside a field
    with pytest.raises(DataError, match=rf"{name}:3: new-line character seen in unquoted field"):
        list(read_records(tmp_path / name))


@pytest.mark.parametrize(("name", "text"), [("f.csv", 'review,label\n"{long}",1\n'),
                                            ("f.tsv", "review\tlabel\n{long}\t1\n")])
def test_a_field_longer_than_the_csv_default_limit_is_read(tmp_path, name, text):
    long = "word " * 40_000  # 200,000 chars; Python's default limit is 131,072
    (tmp_path / name).write_text(text.format(long=long))
    assert list(read_records(tmp_path / name)) == [(2, {"review": long, "label": "1"})]


@pytest.mark.parametrize(("name", "text"), [("DATA.CSV", "a,b\nx,1\n"), ("Data.Tsv", "a\tb\nx\t1\n")])
def test_an_upper_case_suffix_names_the_format(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert list(read_records(tmp_path / name)) == [(2, {"a": "x", "b": "1"})]


class CharTokenizer:
    """One id per character (its code point); like Llama's, BOS (1) before every text unless
    `add_bos` is off."""

    bos_token_id, eos_token_id = 1, 2

    def __init__(self, add_bos: bool = True) -> None:
        self.add_bos = add_bos

    def __call__(self, text: str, add_special_tokens: bool = True) -> SimpleNamespace:
        ids = [ord(c) for c in text]
        bos = [self.bos_token_id] if self.add_bos and add_special_tokens else []
        return SimpleNamespace(input_ids=[*bos, *ids])


def test_a_prompt_cut_from_the_left_keeps_its_bos_token():
    tokenizer = CharTokenizer()
    x, y, e, f = ord("x"), ord("y"), ord("e"), ord("f")
    assert encode(tokenizer, "abcdef", "xy", max_length=6, add_eos=True) == Encoded([1, e, f], [x, y, 2])
    assert encode(tokenizer, "ab", "xy", max_length=6, add_eos=True).prompt == [1, ord("a"), ord("b")]
    assert encode(tokenizer, "abcdef", "xy", max_length=4, add_eos=True).prompt == [f]  # room for one
    no_bos = CharTokenizer(add_bos=False)  # a prompt without BOS is cut as before
    assert encode(no_bos, "abcdef", "xy", max_length=6, add_eos=True).prompt == [ord("d"), e, f]


class MarkerTokenizer:
    """SentencePiece-like: a word-start marker "▁" before every text, so " true" alone reads
    "▁▁true", a lone marker (id 0) and then "true", where after a prompt it is "true" alone.
    One id per word."""

    def __init__(self) -> None:
        self.words: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = True) -> SimpleNamespace:
        pieces = ("▁" + text.replace(" ", "▁")).split("▁")[1:]
        return SimpleNamespace(input_ids=[self.words.setdefault(p, len(self.words) + 1) if p else 0
                                          for p in pieces])


def test_label_words_split_apart_from_the_prompt_are_named():
    """LLaMA-2's tokenizer reads " true" alone as two tokens; STAR tokenises answers alone, so
    the run says so. A tokenizer that reads them alike (byte-level BPE; here one id per
    character) says nothing."""
    task = Task("t", "choice", [Example("1", "Is it? The answer is", None, None)], [],
                labels=["true", "false"], choices=[" true", " false"])
    lines = split_label_words(MarkerTokenizer(), task)
    assert len(lines) == 2 and lines[0].startswith("' true': [0, ")
    assert split_label_words(CharTokenizer(), task) == []


def test_make_folder_syncs_each_new_folder_into_its_parent(tmp_path, monkeypatch):
    """A round's folder made by mkdir alone can lose its name in a power cut while the files
    synced inside it survive; each folder make_folder creates is fsynced into its parent."""
    synced: list[Path] = []
    monkeypatch.setattr(files, "fsync_folder", synced.append)
    files.make_folder(tmp_path / "run" / "rounds" / "0")
    assert synced == [tmp_path, tmp_path / "run", tmp_path / "run" / "rounds"]
    synced.clear()
    files.make_folder(tmp_path / "run" / "rounds" / "1")
    assert synced == [tmp_path / "run" / "rounds"]


def test_only_an_answer_longer_than_the_limit_is_cut_and_it_says_so():
    tokenizer = CharTokenizer(add_bos=False)
    fits = encode(tokenizer, "ab", "xyz", max_length=5, add_eos=True)  # 3 + end token = 4
    assert fits.response == [ord("x"), ord("y"), ord("z"), 2] and not fits.answer_cut
    cut = encode(tokenizer, "ab", "xyzw", max_length=5, add_eos=True)
    assert cut.response == [ord("x"), ord("y"), ord("z"), ord("w")] and cut.answer_cut
    assert cut.prompt == [ord("b")]


def test_the_demo_tests_on_sentences_its_pool_file_does_not_hold(tmp_path):
    """49 of the demo's 200 test sentences once stood word for word in its train file, so its
    accuracy partly measured memory."""
    import json

    from star.tools.demo import write_demo_data

    write_demo_data(tmp_path)
    rows = {name: [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
            for name in ("train.jsonl", "test.jsonl")}
    pool = {row["sentence"] for row in rows["train.jsonl"]}
    assert len(rows["test.jsonl"]) == 200 and not pool & {r["sentence"] for r in rows["test.jsonl"]}
    assert sorted(r["answer"] for r in rows["test.jsonl"]) == sorted("ABCD" * 50)
