"""Reading data files: JSONL, TSV and CSV records with their line numbers, and stable ids.

Every problem names the file and the line, so a user can fix the data without a debugger.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from star.errors import DataError

Record = tuple[int, dict[str, Any]]
"""(line number, record)."""

# Python's default limit of 131,072 chars per field refuses a long document; 2**31 - 1 is the
# largest limit that every platform's C long holds.
csv.field_size_limit(2**31 - 1)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file; a bad byte is reported with its line. A byte-order
    mark (Excel's "CSV UTF-8") is dropped, not read as part of the first field name."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte "
                                f"{exc.start})") from None


def json_objects(path: Path, lines: Iterable[tuple[int, str]]) -> Iterator[Record]:
    """(line number, object) of JSON lines; blank lines are skipped, anything else is named."""
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object")
        yield number, record


def check_data_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"data file '{path}' is a folder, not a file")
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist")


def read_records(path: Path) -> Iterator[Record]:
    """(line number, record) pairs from a .jsonl, .tsv or .csv file with at least one record,
    read as they are consumed (a large file is never held whole).

    A .csv is read as spreadsheets write it: a field with a comma, quote or newline is quoted.
    A .tsv is read as GLUE ships it: tabs separate, quotes are text (SST-2's sentences hold them).
    A row with more or fewer fields than the header is refused, never silently cut or padded.
    """
    check_data_file(path)
    suffix = path.suffix.lower()  # DATA.CSV is a CSV file too
    if suffix in (".tsv", ".csv"):
        dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {}
        records: Iterator[Record] = _rows(path, dialect)
    else:
        records = json_objects(path, _lines(path))
    empty = True
    for record in records:
        empty = False
        yield record
    if empty:
        raise DataError(f"data file '{path}' holds no examples")


def _rows(path: Path, dialect: dict[str, Any]) -> Iterator[Record]:
    """(line number, row) of a .csv or .tsv file; what the csv module cannot parse (a stray
    carriage return inside a field) is named with its line."""
    reader = csv.DictReader((text for _, text in _lines(path)), **dialect)
    try:
        for row in reader:
            yield _whole_row(path, reader, row)
    except csv.Error as exc:  # DictReader's line_num stops at the last good row; its reader's doesn't
        raise DataError(f"{path}:{reader.reader.line_num}: {exc}") from None


def _whole_row(path: Path, reader: csv.DictReader, row: dict[str | None, Any]) -> Record:
    """(line number, row) of a row with exactly the header's fields."""
    width = len(reader.fieldnames or [])
    if None in row:  # DictReader files the extra cells under the key None
        raise DataError(f"{path}:{reader.line_num}: the row has {width + len(row[None])} fields, "
                        f"the header {width}" + (" (quote a field that holds a comma)"
                                                 if path.suffix.lower() == ".csv" else ""))
    if None in row.values():  # and fills the missing ones with None
        raise DataError(f"{path}:{reader.line_num}: the row has {sum(v is not None for v in row.values())} "
                        f"of the header's {width} fields")
    return reader.line_num, dict(row)


def stable_ids(path: Path, records: Iterable[Record]) -> Iterator[tuple[str, Record]]:
    """The `id` field when present and not null, else a hash of the record's content (a null
    id is no id: read as text, every null would be the one id 'None').

    Two records with one `id` would make labels ambiguous, so they are refused with both line
    numbers. A record without an `id` repeated word for word (SST-2 and OBQA have some) stays
    in, as the datasets count it; its copies are told apart by a `#n` suffix.
    Yields (id, record) as the records come.
    """
    first_line: dict[str, int] = {}
    copies: dict[str, int] = {}
    for number, record in records:
        if record.get("id") is not None:
            example_id = str(record["id"])
            if example_id in first_line:
                raise DataError(f"{path}:{number}: duplicate id {example_id!r} (first on line "
                                f"{first_line[example_id]}); every example needs its own id")
            first_line[example_id] = number
        else:
            digest = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
            copies[digest] = copies.get(digest, -1) + 1
            example_id = digest if copies[digest] == 0 else f"{digest}#{copies[digest]}"
        yield example_id, (number, record)
