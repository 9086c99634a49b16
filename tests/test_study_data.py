"""The label-savings study's data script (docs/label-savings/make_data.py) on hand-made files:
an exact 10 % and 2 % minority, TREC's coarse classes as words, and the same bytes on every run."""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "label-savings" / "make_data.py"
_spec = importlib.util.spec_from_file_location("make_data", SCRIPT)
make_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_data)


def rows(negatives: int, positives: int) -> list[list[str]]:
    """Labels interleaved, so keeping the file's order is visible in the output."""
    out = [[f"bad {i}", "0"] for i in range(negatives)] + [[f"good {i}", "1"] for i in range(positives)]
    return sorted(out, key=lambda row: int(row[0].split()[1]))


@pytest.mark.parametrize(("negatives", "positives", "per_minority", "kept_negatives"), [
    (5, 47, 9, 5),    # 47 // 9 = 5 negatives allowed: all 5, with 45 of the 47 positives
    (20, 30, 9, 3),   # 30 // 9 = 3: 3 of the 20 negatives, 27 of the 30 positives
    (4, 36, 9, 4),    # exactly 1 to 9 already: nothing dropped
    (20, 100, 49, 2),  # 1 in 50: 100 // 49 = 2 negatives, 98 of the 100 positives
])
def test_skew_makes_the_minority_exactly_one_in_so_many(negatives, positives, per_minority,
                                                         kept_negatives):
    source = rows(negatives, positives)
    pool = make_data.skew(source, "0", per_minority, np.random.default_rng(0))
    labels = [row[-1] for row in pool]
    assert labels.count("0") == kept_negatives
    assert labels.count("1") == per_minority * kept_negatives
    assert len(pool) == (1 + per_minority) * kept_negatives
    positions = [source.index(row) for row in pool]
    assert positions == sorted(positions)  # the file's order, rows unchanged


def test_skew_refuses_what_cannot_hold_one_minority_row():
    with pytest.raises(ValueError, match="1 in 10"):
        make_data.skew(rows(3, 8), "0", 9, np.random.default_rng(0))
    with pytest.raises(ValueError, match="1 in 50"):
        make_data.skew(rows(3, 48), "0", 49, np.random.default_rng(0))


def test_skew_is_deterministic_for_a_seed_and_varies_with_it():
    source = rows(40, 90)

    def pick(seed):
        return make_data.skew(source, "0", 9, np.random.default_rng(seed))

    assert pick(34) == pick(34)
    assert pick(34) != pick(35)


def test_trec_lines_map_to_coarse_class_words():
    lines = ["ABBR:exp What does NASA stand for ?", "", "NUM:dist How far is it from Denver to Aspen ?",
             "HUM:ind Who was Galileo ?", "DESC:def What is an atom ?",
             "ENTY:cremat What films featured Popeye Doyle ?", "LOC:city Where is Milan ?"]
    assert make_data.trec_records(lines) == [
        {"question": "What does NASA stand for ?", "label": "abbreviation"},
        {"question": "How far is it from Denver to Aspen ?", "label": "number"},
        {"question": "Who was Galileo ?", "label": "human"},
        {"question": "What is an atom ?", "label": "description"},
        {"question": "What films featured Popeye Doyle ?", "label": "entity"},
        {"question": "Where is Milan ?", "label": "location"},
    ]
    with pytest.raises(ValueError, match="line 2: expected 'COARSE:fine question'"):
        make_data.trec_records(["HUM:ind Who ?", "QUANT:x How many ?"])


def test_a_trec_file_reads_alike_in_latin1_and_utf8_and_only_the_published_one_passes(tmp_path):
    text = "LOC:city Which city is a sister\xf0city of Los Angeles ?\n"
    published = hashlib.sha256(text.encode("latin-1")).hexdigest()
    for encoding in ("latin-1", "utf-8"):
        path = tmp_path / encoding
        path.write_bytes(text.encode(encoding))
        assert make_data.trec_text(path) == text
        make_data.check_trec(make_data.trec_text(path), path, published)
    with pytest.raises(ValueError, match="not the published file's"):
        make_data.check_trec(text.replace("Angeles", "Angles"), path, published)


def test_the_script_writes_the_same_files_on_every_run(tmp_path, monkeypatch):
    sst2, trec = tmp_path / "SST-2", tmp_path / "trec"
    sst2.mkdir()
    trec.mkdir()
    train = [[f'a "quoted" review {i} ', "0" if i % 4 == 0 else "1"] for i in range(200)]  # 50 to 150
    (sst2 / "train.tsv").write_text(make_data.tsv_text(["sentence", "label"], train))
    (sst2 / "test.tsv").write_bytes(b'sentence\tlabel\n"so" bad \t0\ngood\t1\n')
    files = {"train": ("train_5500.label", "ABBR:abb What is TMJ ?\nNUM:date When ?\n"),
             "test": ("TREC_10.label", "HUM:ind Who ?\n")}
    for name, text in files.values():
        (trec / name).write_bytes(text.encode("latin-1"))
    monkeypatch.setattr(make_data, "TREC_FILES", {
        split: (name, hashlib.sha256(text.encode("latin-1")).hexdigest())
        for split, (name, text) in files.items()})

    def run(out):
        make_data.main(["--out", str(out), "--sst2", str(sst2), "--trec", str(trec)])
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                if p.is_file()}

    first = run(tmp_path / "one")
    assert first == run(tmp_path / "two")
    assert sorted(first) == ["sst2-rare/test.tsv", "sst2-rare/train.tsv", "sst2-skewed/test.tsv",
                             "sst2-skewed/train.tsv", "trec6/test.jsonl", "trec6/train.jsonl"]
    for folder, negatives, size in (("sst2-skewed", 16, 160), ("sst2-rare", 3, 150)):
        assert first[f"{folder}/test.tsv"] == (sst2 / "test.tsv").read_bytes()
        _, pool = make_data.read_tsv(tmp_path / "one" / folder / "train.tsv")
        assert [row[-1] for row in pool].count("0") == negatives and len(pool) == size
        assert all(row in train for row in pool)  # quotes and trailing spaces kept as read
    assert first["trec6/train.jsonl"] == (b'{"question": "What is TMJ ?", "label": "abbreviation"}\n'
                                          b'{"question": "When ?", "label": "number"}\n')
