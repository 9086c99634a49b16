"""Labels in and out of star through files: Label Studio projects, plain CSV and JSONL.

A round's batch goes out as Label Studio tasks (with the model's guess as a prediction, so
annotators correct it rather than start blank) or as a plain table to fill in; the answers
come back through `read_labels`, which accepts every export layout below and names the file
and line of anything it cannot read. Whether an answer fits the batch (known id, label in
the set) is `Batch.check`'s job, not this module's: the caller passes each label through it.

Label Studio layouts (recorded from 1.23 in tests/data/labelstudio), as exported by
`/api/projects/{id}/export?exportType=...`:
- JSON: one object per task, `data.star_id` our id, `annotations[].result[]` the answers;
- JSON_MIN: one object per (non-cancelled) annotation, the task's data flattened in, the
  answer under the control's name (`star_label`);
- CSV: the JSON_MIN rows as a table.
Plain layouts: CSV with columns `id,label` (or `id,value`), JSONL lines `{"id", "label"}`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from star.active.batch import Batch
from star.data.readers import json_objects
from star.errors import ConfigError, DataError
from star.files import write_text_atomic

FORMATS = ("labelstudio", "csv", "jsonl")
"""What `write_batch` can write."""
LABEL_CONTROL = "star_label"
"""Name of the Label Studio control (Choices or TextArea): the answer's column in JSON_MIN/CSV."""
RESERVED = {"id", "label", "value", "suggestion", "confidence", "uncertainty", "prompt", "star_id",
            "star_round", "star_uncertainty", LABEL_CONTROL, "annotator", "annotation_id",
            "created_at", "updated_at", "lead_time", "agreement", "history"}
"""Keys of our rows and of Label Studio's exports: a record field never takes one of them."""
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ImportedLabel:
    id: str
    value: str
    annotator: str
    where: str
    """'file:line' or 'file:task N', for the error message if `Batch.check` refuses it."""
    time: datetime | None = None
    """When the annotation was last changed (Label Studio exports); None in plain files."""


# ---------------------------------------------------------------- out: Label Studio


def _field_keys(batch: Batch) -> dict[str, str]:
    """Each record field's key in tasks and tables: a name that Label Studio's `$variable`
    and XML accept and that no column of ours or of an export already uses."""
    keys: dict[str, str] = {}
    taken = set(RESERVED)
    for item in batch.items:
        for name in item.fields:
            if name in keys:
                continue
            key = re.sub(r"\W", "_", name, flags=re.ASCII)
            if not key or key[0].isdigit():
                key = f"f_{key}"
            while key in taken:
                key += "_"
            keys[name] = key
            taken.add(key)
    return keys


def _shown(batch: Batch) -> dict[str, str]:
    """Data key -> heading of what the annotator reads: the fields, or the prompt if none."""
    return {key: name for name, key in _field_keys(batch).items()} or {"prompt": "prompt"}


def labelstudio_tasks(batch: Batch, model_version: str, blind: bool = False) -> list[dict[str, Any]]:
    """Label Studio tasks for `batch`, each with the model's answer as a prediction.

    `star_uncertainty` lets a project sort on the acquisition score; the prediction's `score`
    is the model's confidence, which Label Studio's uncertainty sampling shows lowest first.
    `blind` leaves the prediction out (blind labeling: annotators do not see the guess).
    """
    keys = _field_keys(batch)
    to_name = next(iter(_shown(batch)))
    tasks = []
    for item in batch.items:
        data: dict[str, Any] = {keys[name]: value for name, value in item.fields.items()}
        data |= {"star_id": item.id, "star_round": batch.round, "star_uncertainty": item.uncertainty,
                 "prompt": item.prompt}
        if blind:
            tasks.append({"data": data})
            continue
        tasks.append({"data": data, "predictions": [labelstudio_prediction(
            batch.generative, to_name, item.suggestion, item.confidence, model_version)]})
    return tasks


def labelstudio_prediction(generative: bool, to_name: str, answer: str, confidence: float,
                           model_version: str) -> dict[str, Any]:
    """The model's `answer` as a Label Studio prediction of star's control (a choice, or a
    draft text), scored by its confidence: in tasks star writes and from `star serve`."""
    kind, key = ("textarea", "text") if generative else ("choices", "choices")
    result = {"from_name": LABEL_CONTROL, "to_name": to_name, "type": kind, "value": {key: [answer]}}
    return {"model_version": model_version, "score": confidence, "result": [result]}


def labeling_config(batch: Batch) -> str:
    """Label Studio labeling config: the record's fields, then the answer control.

    Choices show the label's display words; `alias` makes the export carry the label itself
    (Label Studio stores the alias, not the shown value, in the result).
    """
    view = ET.Element("View")
    shown = _shown(batch)
    for key, heading in shown.items():
        ET.SubElement(view, "Header", value=heading)
        ET.SubElement(view, "Text", name=key, value=f"${key}")
    to_name = next(iter(shown))
    if batch.generative:
        ET.SubElement(view, "TextArea", name=LABEL_CONTROL, toName=to_name, editable="true",
                      maxSubmissions="1", required="true", rows="4")
    else:
        choices = ET.SubElement(view, "Choices", name=LABEL_CONTROL, toName=to_name,
                                choice="single", required="true", showInline="true")
        for label in batch.labels:
            words = batch.display.get(label, label).strip() or label
            ET.SubElement(choices, "Choice", value=words, alias=label)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


# ---------------------------------------------------------------- out: files


def _csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _rows(batch: Batch, blind: bool) -> list[dict[str, Any]]:
    """One row per item to fill in: what the annotator reads, the model's guess (unless
    `blind`), and `label`."""
    keys = _field_keys(batch)
    rows = []
    for item in batch.items:
        row = {"id": item.id, **{keys[name]: value for name, value in item.fields.items()}}
        if not blind:
            row |= {"suggestion": item.suggestion, "confidence": item.confidence}
        rows.append(row | {"uncertainty": item.uncertainty, "label": ""})
    return rows


def write_batch(batch: Batch, path: Path, fmt: str, model_version: str = "", blind: bool = False) -> None:
    """Write `batch` for labeling outside star, in one of `FORMATS`.

    `labelstudio` writes the tasks to `path` and the labeling config beside it (`<stem>.xml`);
    `csv` and `jsonl` write one row per item with an empty `label` to fill in. `blind` leaves
    the model's suggestion and confidence out of every format.
    `model_version` names the predictions in Label Studio (default: the round). Every file is
    written atomically, so a Label Studio import or a spreadsheet never reads half of one.
    """
    if fmt == "labelstudio":
        tasks = labelstudio_tasks(batch, model_version or f"star-round-{batch.round}", blind)
        write_text_atomic(path, json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
        write_text_atomic(path.with_suffix(".xml"), labeling_config(batch))
    elif fmt == "csv":
        guess = [] if blind else ["suggestion", "confidence"]
        columns = ["id", *_field_keys(batch).values(), *guess, "uncertainty", "label"]
        # A byte-order mark: Excel opens the file as UTF-8 (accents intact) instead of ANSI.
        write_text_atomic(path, "\ufeff" + _csv_text(columns, _rows(batch, blind)))
    elif fmt == "jsonl":
        rows = _rows(batch, blind)
        write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    else:
        raise ConfigError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- in


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {error.start})") from None


def annotation_time(record: Mapping[str, Any], where: str) -> datetime | None:
    """When a Label Studio annotation last changed: its update (else creation) time, ISO 8601
    with 'Z' or an offset, comparable with any other; None where it has neither."""
    stamp = record.get("updated_at") or record.get("created_at")
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"{where}: {stamp!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def annotation_order(record: Mapping[str, Any], annotation_id: Any, where: str) -> tuple[bool, datetime, int]:
    """Where an annotation goes in time order: a reviewer's ground truth after every other
    annotation of its task, then by `annotation_time`, then by annotation id. Journaled in this
    order, the newest per id is the one in force (`star import` and `star labelstudio` alike)."""
    return (bool(record.get("ground_truth")), annotation_time(record, where) or _OLDEST,
            _number(annotation_id))


def counted_annotations(task: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """A full-JSON task's annotations that count (not skipped), oldest first (`annotation_order`)."""
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return sorted(kept, key=lambda a: annotation_order(a, a.get("id"), where))


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


@dataclass(frozen=True)
class _Candidate:
    """One Label Studio annotation and where it goes in time order (`annotation_order`)."""

    label: ImportedLabel
    order: tuple[bool, datetime, int]


def _candidate(example_id: Any, value: Any, who: Any, record: Mapping[str, Any], annotation_id: Any,
               where: str) -> _Candidate:
    if example_id in (None, ""):
        raise DataError(f"{where}: no star_id: were these tasks written by star (labelstudio_tasks)?")
    if not isinstance(value, str):  # e.g. a JSON_MIN cell of a control with several answers
        raise DataError(f"{where}: the '{LABEL_CONTROL}' answer is {value!r}, not one text; was the "
                        "project made with star's labeling config?")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    label = ImportedLabel(str(example_id), value, "" if who is None else str(who), where,
                          time=annotation_time(record, where))
    return _Candidate(label, annotation_order(record, annotation_id, where))


def result_value(results: list[dict[str, Any]], where: str) -> str:
    """The answer in an annotation's `result`: its one choice or its text. Other controls a
    project added (a comment box, say) are not the answer and are left alone."""
    answers = [r for r in results if r.get("type") in ("choices", "textarea")
               and r.get("from_name", LABEL_CONTROL) == LABEL_CONTROL]
    if len(answers) != 1:
        raise DataError(f"{where}: expected one choices or textarea answer, found {len(answers)}")
    value = answers[0].get("value") or {}
    if answers[0]["type"] == "textarea":
        return "\n".join(value.get("text") or [])
    picked = value.get("choices") or []
    if len(picked) != 1:
        raise DataError(f"{where}: expected one choice, found {len(picked)}")
    return picked[0]


def _ls_full(tasks: list[Any], path: Path) -> Iterator[_Candidate]:
    for number, task in enumerate(tasks, 1):
        where = f"{path}:task {number}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DataError(f"{where}: a task without 'data'; not a Label Studio JSON export")
        for annotation in counted_annotations(task, where):
            value = result_value(annotation.get("result") or [], where)
            yield _candidate(task["data"].get("star_id"), value, annotation.get("completed_by"), annotation,
                             annotation_id=annotation.get("id"), where=where)


def _ls_rows(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[_Candidate]:
    """JSON_MIN objects or CSV rows: one per annotation (cancelled ones are left out by the
    export), none for a task nobody annotated."""
    for where, row in rows:
        if row.get("annotation_id") in (None, ""):
            continue
        if LABEL_CONTROL not in row:
            raise DataError(f"{where}: no '{LABEL_CONTROL}' answer; was the project made with "
                            "star's labeling config?")
        yield _candidate(row.get("star_id"), row[LABEL_CONTROL], row.get("annotator"), row,
                         annotation_id=row.get("annotation_id"), where=where)


def _in_time_order(candidates: Iterable[_Candidate], annotator: str | None,
                   default: str) -> list[ImportedLabel]:
    """Every annotation, oldest first (see `_Candidate`): journaled in this order, the newest
    per id is the one in force, and each annotator's answer stays for their agreement."""
    ordered = sorted(candidates, key=lambda c: c.order)
    return [replace(c.label, annotator=annotator or c.label.annotator or default) for c in ordered]


def _plain(example_id: Any, value: Any, annotator: Any, where: str) -> ImportedLabel | None:
    """A plain row's label, or None when it was left blank (rows nobody filled in)."""
    if example_id in (None, ""):
        raise DataError(f"{where}: empty id")
    if value is None or str(value) == "":
        return None
    return ImportedLabel(str(example_id), str(value), str(annotator), where)


def _read_json(text: str, path: Path, annotator: str | None) -> list[ImportedLabel]:
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(tasks, list):
        raise DataError(f"{path}:1: expected a list of Label Studio tasks")
    if tasks and isinstance(tasks[0], dict) and "annotations" in tasks[0]:
        return _in_time_order(_ls_full(tasks, path), annotator, path.name)
    if all(isinstance(task, dict) and "star_id" in task for task in tasks):
        rows = ((f"{path}:task {n}", task) for n, task in enumerate(tasks, 1))
        return _in_time_order(_ls_rows(rows), annotator, path.name)
    raise DataError(f"{path}:1: a JSON list that is neither a Label Studio JSON nor JSON_MIN export "
                    "of star's tasks")


def _read_jsonl(text: str, path: Path, annotator: str | None) -> list[ImportedLabel]:
    labels = []
    for number, record in json_objects(path, enumerate(text.splitlines(), 1)):
        where = f"{path}:{number}"
        if "id" not in record or not {"label", "value"} & record.keys():
            raise DataError(f"{where}: expected an object with 'id' and 'label' (or 'value')")
        value = record["label"] if "label" in record else record["value"]
        label = _plain(record["id"], value, annotator or record.get("annotator") or path.name, where)
        if label:
            labels.append(label)
    return labels


def _read_csv(text: str, path: Path, annotator: str | None) -> list[ImportedLabel]:
    """Comma-separated, or as Excel saves it where the comma is the decimal mark: with
    semicolons (or tabs), told by the header line."""
    header = text.split("\n", 1)[0]
    delimiter = next((d for d in (",", ";", "\t") if d in header), ",")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []  # (where, row), `where` the row's first line: a quoted cell may span several
    try:
        columns = reader.fieldnames or []
        first = reader.line_num + 1
        for row in reader:
            rows.append((f"{path}:{first}", row))
            first = reader.line_num + 1
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({error})") from None
    if "star_id" in columns:
        return _in_time_order(_ls_rows(rows), annotator, path.name)
    answer = next((name for name in ("label", "value") if name in columns), None)
    if "id" not in columns or answer is None:
        raise DataError(f"{path}:1: expected columns 'id' and 'label' (or 'value'), found: "
                        f"{', '.join(columns) or 'none'}")
    labels = []
    for where, row in rows:
        if None in row:
            raise DataError(f"{where}: more cells than the header has columns")
        label = _plain(row["id"], row[answer], annotator or row.get("annotator") or path.name, where)
        if label:
            labels.append(label)
    return labels


def read_labels(path: Path, annotator: str | None = None) -> list[ImportedLabel]:
    """The labels in a Label Studio export (JSON, JSON_MIN, CSV) or a plain CSV / JSONL file.

    The layout is told by the content: a JSON list is a Label Studio JSON or JSON_MIN export,
    lines of objects are JSONL, anything else is CSV (Label Studio's when it has `star_id`).
    For Label Studio, cancelled (skipped) annotations are ignored and every other one is
    returned, oldest first (a reviewer's ground truth last), so that the newest is in force
    once journaled and each annotator's answer counts for their agreement. The annotator,
    unless `annotator` is given, is the annotation's author:
    a user id in Label Studio's quick export (`GET /api/projects/{id}/export`), the email in
    a snapshot export that expands `completed_by`. In plain files it is the `annotator`
    column if there is one, else the file's name. Blank labels in plain files are rows
    nobody filled in, so they are skipped.
    """
    text = _text(path)
    start = text.lstrip()[:1]
    if start == "[":
        return _read_json(text, path, annotator)
    if start == "{":
        return _read_jsonl(text, path, annotator)
    return _read_csv(text, path, annotator)
