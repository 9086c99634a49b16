"""A pool too large to hold as Python objects: its examples in an Arrow file, memory-mapped.

The first time a train file is read with a task's format, every example is built once and
its fields are streamed into an Arrow file in the cache, keyed by the file's content (hashed
in 0.1 s for a million SST-2 lines) and the task's settings. After that the pool is that
file, memory-mapped: the operating system pages in what is read, and an example becomes a
Python object only while the code that asked for it holds it (a part of a scoring pass, a
batch). A million SST-2-length sentences took 930 MB as Python objects; as a table, a few MB
of process memory beside the file's pages, which the system can drop and read again
(measured, docs/performance.md).

The file is in the Arrow stream format `datasets` writes its caches in, and is opened the way
`datasets.Dataset.from_file` opens them (`pyarrow.memory_map`, read as a stream); calling
pyarrow directly saves importing `datasets`, which took 1.9 s and 86 MB here.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from star.data.tasks import Example
from star.files import atomic_file, cache_root, check_cache_folder, digest

COLUMNS = ("id", "prompt", "response", "gold", "answer", "fields")
"""An example's fields as stored; `fields` (a dict) as JSON text."""
ROWS_PER_BATCH = 8192
"""Examples written per Arrow record batch, and read per batch when iterating."""
TABLE_VERSION = 1
"""Raise when the stored columns change."""
BUILDERS = ("readers.py", "sources.py", "tasks.py")
"""The modules of this package that turn records into examples (readers, prompt templates):
the cache key holds their code, so an edited template is never served from an old table."""
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])


def _record(example: Example) -> dict[str, str | None]:
    return {"id": example.id, "prompt": example.prompt, "response": example.response,
            "gold": example.gold, "answer": example.answer,
            "fields": json.dumps(example.fields, ensure_ascii=False)}


def _example(row: dict[str, Any]) -> Example:
    return Example(row["id"], row["prompt"], row["response"], row["gold"], answer=row["answer"],
                   fields=json.loads(row["fields"]))


class ExampleTable(Sequence[Example]):
    """Examples in a (memory-mapped) Arrow table, optionally a selection of its rows."""

    def __init__(self, table: pa.Table, rows: np.ndarray | None = None) -> None:
        self.table = table
        self.rows = rows
        """Which table rows, in order; None: all of them."""

    def __len__(self) -> int:
        return self.table.num_rows if self.rows is None else len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Example: ...

    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...

    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        """One example, or a slice of them as a list (the part a pass works on)."""
        if isinstance(index, slice):
            return self.examples(range(len(self))[index])
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.examples([index % len(self)])[0]

    def __iter__(self) -> Iterator[Example]:
        for start in range(0, len(self), ROWS_PER_BATCH):
            yield from self.examples(range(start, min(start + ROWS_PER_BATCH, len(self))))

    def examples(self, positions: Iterable[int]) -> list[Example]:
        """The examples at these positions, built now."""
        return [_example(row) for row in self._read(positions, self.table)]

    def _read(self, positions: Iterable[int], columns: pa.Table) -> list[dict[str, Any]]:
        """Rows of `columns` at these positions, read run by run of consecutive rows: a slice
        of a memory-mapped table copies nothing, where `take` first built 138 MB of state for
        a million rows (measured)."""
        positions = np.fromiter(positions, dtype=np.int64)
        rows = positions if self.rows is None else self.rows[positions]
        runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1) if len(rows) else []
        return [row for run in runs for row in columns.slice(int(run[0]), len(run)).to_pylist()]

    def select(self, positions: Sequence[int] | np.ndarray) -> ExampleTable:
        """A view of these positions, in this order; nothing is copied."""
        positions = np.asarray(positions, dtype=np.int64)
        return ExampleTable(self.table, positions if self.rows is None else self.rows[positions])

    def positions_of(self, ids: Sequence[str]) -> np.ndarray:
        """Where each of `ids` is in this table (or view), found by Arrow in the id column
        without building a Python object per row."""
        found = pc.index_in(self.table.column("id"), value_set=pa.array(list(ids), pa.string()))
        table_rows = np.flatnonzero(found.is_valid().to_numpy(zero_copy_only=False))
        which = found.drop_null().to_numpy()
        positions = table_rows
        if self.rows is not None:  # views keep table order (ascending rows)
            positions = np.searchsorted(self.rows, table_rows)
            inside = positions < len(self.rows)
            inside[inside] = self.rows[positions[inside]] == table_rows[inside]
            positions, which = positions[inside], which[inside]
        result = np.full(len(ids), -1, dtype=np.int64)
        result[which] = positions
        if (result < 0).any():
            raise KeyError(ids[int(np.flatnonzero(result < 0)[0])])
        return result

    def ids(self) -> Iterator[str]:
        """Every example's id, in order, a batch of rows at a time (a million ids as Python
        strings would take 63 MB)."""
        column = self._ids
        for start in range(0, len(self), ROWS_PER_BATCH):
            rows = self._read(range(start, min(start + ROWS_PER_BATCH, len(self))), column)
            yield from (row["id"] for row in rows)

    def unanswered_ids(self) -> list[str]:
        """The ids of the examples without an answer, found from the answer column's nulls."""
        rows = np.flatnonzero(self.table.column("answer").is_null().to_numpy(zero_copy_only=False))
        positions = rows if self.rows is None else np.flatnonzero(np.isin(self.rows, rows))
        return [row["id"] for row in self._read(positions, self._ids)]

    @property
    def _ids(self) -> pa.Table:
        """The id column alone, for reading ids without the texts."""
        return self.table.select(["id"])


def select(examples: Sequence[Example], positions: Sequence[int] | np.ndarray) -> Sequence[Example]:
    """`examples` at `positions`: a view of a table, a list of anything else."""
    if isinstance(examples, ExampleTable):
        return examples.select(positions)
    return [examples[i] for i in positions]


def example_ids(examples: Sequence[Example]) -> Iterator[str]:
    """Each example's id, in order, without building the examples of a table."""
    return examples.ids() if isinstance(examples, ExampleTable) else (e.id for e in examples)


def unanswered_ids(examples: Sequence[Example]) -> list[str]:
    """The ids of the examples that carry no answer (which an oracle cannot give)."""
    if isinstance(examples, ExampleTable):
        return examples.unanswered_ids()
    return [e.id for e in examples if e.answer is None]


def positions_of(examples: Sequence[Example], ids: Sequence[str]) -> np.ndarray:
    """The position of each of `ids` in `examples` (KeyError for one that is not there)."""
    if isinstance(examples, ExampleTable):
        return examples.positions_of(ids)
    where = {e.id: i for i, e in enumerate(examples)}
    return np.array([where[i] for i in ids], dtype=np.int64)


def table_folder() -> Path:
    return cache_root() / "tables"


@functools.cache
def _builder_code() -> str:
    folder = Path(__file__).parent
    return digest([hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in BUILDERS])


def example_table(path: Path, settings: dict[str, Any],
                  build: Callable[[], Iterable[Example]]) -> ExampleTable:
    """The examples `build()` makes of the file at `path`, from the cached Arrow file when one
    was written for this file as it is now and these settings, else written now."""
    content = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            content.update(chunk)
    key = digest([content.hexdigest(), settings, TABLE_VERSION, _builder_code()])
    arrow = table_folder() / f"{key}.arrow"
    if not arrow.exists():
        check_cache_folder(arrow.parent)
        with atomic_file(arrow, "wb") as handle, pa.ipc.new_stream(handle, SCHEMA) as writer:
            batch: list[dict[str, str | None]] = []
            for example in build():
                batch.append(_record(example))
                if len(batch) == ROWS_PER_BATCH:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=SCHEMA))
                    batch = []
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=SCHEMA))
    return ExampleTable(pa.ipc.open_stream(pa.memory_map(str(arrow))).read_all())
