"""Builds the skewed datasets of the label-savings study (docs/label-savings, issue 34).

Active learning pays where random sampling rarely draws a class, so the study needs skewed
pools beside balanced SST-2; the test sets stay as published, so accuracy and macro-F1 are
read on the classes as they come.

- `sst2-skewed/`: SST-2's train.tsv with negatives as exactly 10 % of the rows (1 negative to 9
  positives), test.tsv copied as is (872 rows, 428 negative). Negatives are the minority because
  positives are SST-2's larger class (33,828 of 60,614 rows): keeping them whole keeps the most
  text (37,580 rows), and a stream of reviews where complaints are the rare class is the usual
  case. 33,828 is not a multiple of 9, so 6 positives are dropped to make the ratio exact; a pool
  drawn from the file (`loop.pool_size` 1,280, seeded) then holds about 128 negatives.
- `sst2-rare/`: the same with negatives 2 % of the rows (1 to 49: 690 negatives, 33,810
  positives), so that a pool of 1,280 holds about 26 and 128 random labels about 2.6: the rare
  class of fraud, defects or complaints in a stream, where random sampling almost never draws it.
- `trec6/`: TREC question classification (Li & Roth 2002), 5,452 train and 500 test questions
  with the 6 coarse classes as the words the model answers with (abbreviation 1.6 % of train).
  The files are not in the repository; get them (checked against the published SHA-256 below):

      BASE=https://raw.githubusercontent.com/dylanell/short-text-cluster/69054f305d51669040a5925ce26776666461d6a6/datasets/q-type
      mkdir -p runs/trec-src
      curl -fsSL -o runs/trec-src/train_5500.label $BASE/train.txt
      curl -fsSL -o runs/trec-src/TREC_10.label $BASE/test.txt

  The originals (https://cogcomp.seas.upenn.edu/Data/QA/QC/, Latin-1) pass the check too; that
  repository's copy differs only in one character of train re-encoded as UTF-8. Licence: none
  stated by cogcomp or that repository (Hugging Face's card says "unknown"), so the files are
  fetched by each user and never committed.

Run from the repository's root (writes nothing outside --out; the same files on every run):

    .venv/bin/python docs/label-savings/make_data.py --out runs/data --trec runs/trec-src

Standard library and numpy only, so it runs before `star` is installed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SEED = 34
"""The issue's number: one fixed seed, so the files are the same on every machine."""
SKEWED = {"sst2-skewed": 9, "sst2-rare": 49}
"""Folder -> majority rows per minority row: a 10 % and a 2 % minority."""
SST2_MINORITY = "0"
"""SST-2's negative label: the class made rare."""

TREC_CLASSES = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity",
                "HUM": "human", "LOC": "location", "NUM": "number"}
"""Coarse class -> the label word (one token each for SmolLM2, so one pass scores all six)."""
TREC_FILES = {
    "train": ("train_5500.label", "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3"),
    "test": ("TREC_10.label", "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e"),
}
"""Split -> (file name, SHA-256 of the Latin-1 file cogcomp publishes, as Hugging Face's
`trec` loader records it)."""

Row = list[str]


def skew(rows: list[Row], minority: str, per_minority: int, rng: np.random.Generator) -> list[Row]:
    """The rows (label last) with the `minority` label exactly 1 in 1 + `per_minority`: as many
    minority rows as the majority allows, drawn by `rng`; majority rows beyond `per_minority`
    times that count (at most `per_minority` - 1) drawn out too. The file's order is kept, so
    an example keeps its neighbours and its content id."""
    rare = [i for i, row in enumerate(rows) if row[-1] == minority]
    common = [i for i, row in enumerate(rows) if row[-1] != minority]
    count = min(len(rare), len(common) // per_minority)
    if count == 0:
        raise ValueError(f"too few rows to make label {minority!r} 1 in "
                         f"{1 + per_minority}: {len(rare)} of it, {len(common)} others")
    kept = [*rng.choice(rare, count, replace=False),
            *rng.choice(common, count * per_minority, replace=False)]
    return [rows[i] for i in sorted(kept)]


def read_tsv(path: Path) -> tuple[Row, list[Row]]:
    """(header, rows) of a GLUE .tsv: tabs separate, quotes are text."""
    with path.open(encoding="utf-8", newline="") as handle:
        header, *rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
    return header, rows


def tsv_text(header: Row, rows: Iterable[Row]) -> str:
    """Rows as GLUE writes them; a field cannot hold a tab or newline, as it was read from one."""
    return "".join("\t".join(row) + "\n" for row in [header, *rows])


def trec_text(path: Path) -> str:
    """A TREC file as text: UTF-8 if it is (a re-encoded copy), else the original's Latin-1."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def check_trec(text: str, path: Path, sha256: str) -> None:
    """Refuse any copy but the published one: the study's numbers are for these questions."""
    try:
        digest = hashlib.sha256(text.encode("latin-1")).hexdigest()
    except UnicodeEncodeError:
        digest = "(text outside Latin-1)"
    if digest != sha256:
        raise ValueError(f"{path}: SHA-256 {digest}, not the published file's {sha256}; "
                         "get it as docs/label-savings/make_data.py's docstring says")


def trec_records(lines: Iterable[str]) -> list[dict[str, str]]:
    """`COARSE:fine question text` lines -> {"question", "label"} with the coarse class's word."""
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        classes, _, question = line.strip().partition(" ")
        coarse = classes.split(":")[0]
        if coarse not in TREC_CLASSES or not question:
            raise ValueError(f"line {number}: expected 'COARSE:fine question' with COARSE in "
                             f"{', '.join(TREC_CLASSES)}, got {line.strip()!r}")
        records.append({"question": question, "label": TREC_CLASSES[coarse]})
    return records


def jsonl_text(records: Iterable[dict[str, str]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_atomically(path: Path, data: bytes) -> None:
    """Whole or not at all: a cut run must not leave half a pool that a study then reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(path)


def by_label(labels: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(labels).items()))


def make_sst2_skewed(source: Path, out: Path, per_minority: int) -> None:
    header, rows = read_tsv(source / "train.tsv")
    pool = skew(rows, SST2_MINORITY, per_minority, np.random.default_rng(SEED))
    write_atomically(out / "train.tsv", tsv_text(header, pool).encode())
    write_atomically(out / "test.tsv", (source / "test.tsv").read_bytes())
    _, test = read_tsv(out / "test.tsv")
    for name, part in (("train", pool), ("test", test)):
        print(f"{out / name}.tsv: {len(part)} rows, by label {by_label(r[-1] for r in part)}")


def make_trec6(source: Path, out: Path) -> None:
    for split, (name, sha256) in TREC_FILES.items():
        text = trec_text(source / name)
        check_trec(text, source / name, sha256)
        try:
            records = trec_records(text.splitlines())
        except ValueError as exc:
            raise ValueError(f"{source / name}: {exc}") from None
        write_atomically(out / f"{split}.jsonl", jsonl_text(records).encode())
        print(f"{out / split}.jsonl: {len(records)} questions, by label "
              f"{by_label(r['label'] for r in records)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/data"),
                        help="folder for sst2-skewed/, sst2-rare/ and trec6/ (default runs/data)")
    parser.add_argument("--sst2", type=Path, default=Path("../shared/data/SST-2"),
                        help="folder with SST-2's train.tsv and test.tsv")
    parser.add_argument("--trec", type=Path, default=None,
                        help="folder with train_5500.label and TREC_10.label; without it, no trec6/")
    args = parser.parse_args(argv)
    try:
        for folder, per_minority in SKEWED.items():
            make_sst2_skewed(args.sst2, args.out / folder, per_minority)
        if args.trec is not None:
            make_trec6(args.trec, args.out / "trec6")
    except (OSError, ValueError) as exc:  # a missing or wrong input file: one line, not a traceback
        raise SystemExit(f"make_data.py: {exc}") from None


if __name__ == "__main__":
    main()
