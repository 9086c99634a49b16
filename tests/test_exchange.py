"""Label Studio tasks and config, and reading labels back from every export layout.

The Label Studio files in tests/data/labelstudio are real exports of the batches below, made by
tests/test_labelstudio_server.py (STAR_RECORD_LABELSTUDIO=1) against a real server.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from star.active.batch import Batch, BatchItem
from star.annotate.exchange import (
    ImportedLabel,
    labeling_config,
    labelstudio_tasks,
    read_labels,
    write_batch,
)
from star.errors import ConfigError, DataError

RECORDED = Path(__file__).parent / "data" / "labelstudio"
ADMIN, BOB = "admin@star.test", "bob@star.test"


def choice_batch() -> Batch:
    items = [BatchItem(f"r{n}", {"review": review, "product name": product}, f"Review: {review}\nSentiment:",
                       suggestion, confidence=confidence, uncertainty=uncertainty)
             for n, (review, product, suggestion, confidence, uncertainty) in enumerate([
                 ("Loved it, would buy again.", "kettle", "1", 0.91, 0.12),
                 ("Broke after a week.", "toaster", "1", 0.55, 0.68),
                 ("It is a lamp.", "lamp", "0", 0.51, 0.69),
                 ("Fine, & <cheap>.", "mug", "0", 0.62, None),
             ], 1)]
    return Batch(2, items, ["0", "1"], {"0": " negative", "1": " positive"})


def generative_batch() -> Batch:
    items = [BatchItem(f"g{n}", {"question": question}, f"Q: {question}\nA:", draft,
                       confidence=confidence, uncertainty=uncertainty)
             for n, (question, draft, confidence, uncertainty) in enumerate([
                 ("What is the capital of France?", " Paris.", 0.8, 0.3),
                 ("Name a prime number.", " 4", 0.2, 1.7),
                 ("Say hello.", " Hello.", 0.9, 0.1),
             ], 1)]
    return Batch(3, items)


# Labels (and annotators) in the recorded exports; what annotators did is in
# test_labelstudio_server.py. Quick exports name annotators by user id (admin 1, Bob 2).
CHOICE_EXPECTED = {"r1": ("1", "1"), "r2": ("0", "1"), "r4": ("1", "2")}
GENERATIVE_EXPECTED = {"g1": (" Paris.", "1"), "g2": ("2 is prime.\nSo are 3 and 5.", "1")}


def checked(labels: list[ImportedLabel], batch: Batch) -> dict[str, tuple[str, str]]:
    return {label.id: (batch.check(label.id, label.value, label.where), label.annotator)
            for label in labels}


# ---------------------------------------------------------------- tasks and config


def test_choice_tasks_carry_fields_ids_scores_and_the_suggested_label():
    tasks = labelstudio_tasks(choice_batch(), "run-a/round-2")
    assert len(tasks) == 4
    assert tasks[0] == {
        "data": {"review": "Loved it, would buy again.", "product_name": "kettle", "star_id": "r1",
                 "star_round": 2, "star_uncertainty": 0.12,
                 "prompt": "Review: Loved it, would buy again.\nSentiment:"},
        "predictions": [{"model_version": "run-a/round-2", "score": 0.91, "result": [
            {"from_name": "star_label", "to_name": "review", "type": "choices",
             "value": {"choices": ["1"]}}]}],
    }
    assert tasks[3]["data"]["star_uncertainty"] is None
    json.dumps(tasks)  # what Label Studio imports must be plain JSON


def test_generative_tasks_offer_the_draft_as_text():
    prediction = labelstudio_tasks(generative_batch(), "v")[1]["predictions"][0]
    assert prediction["score"] == 0.2
    assert prediction["result"] == [{"from_name": "star_label", "to_name": "question", "type": "textarea",
                                     "value": {"text": [" 4"]}}]


def test_field_names_are_made_safe_and_never_take_our_keys():
    batch = Batch(0, [BatchItem("x", {"label": "a", "1st": "b", "star id": "c"}, "p", "no",
                                confidence=0.5)], ["no"])
    data = labelstudio_tasks(batch, "v")[0]["data"]
    assert data == {"label_": "a", "f_1st": "b", "star_id_": "c", "star_id": "x", "star_round": 0,
                    "star_uncertainty": None, "prompt": "p"}
    config = labeling_config(batch)
    for key in ("label_", "f_1st", "star_id_"):
        assert f'<Text name="{key}" value="${key}" />' in config


def test_choice_config_shows_display_words_and_exports_the_label():
    assert labeling_config(choice_batch()) == """\
<View>
  <Header value="review" />
  <Text name="review" value="$review" />
  <Header value="product name" />
  <Text name="product_name" value="$product_name" />
  <Choices name="star_label" toName="review" choice="single" required="true" showInline="true">
    <Choice value="negative" alias="0" />
    <Choice value="positive" alias="1" />
  </Choices>
</View>
"""


def test_generative_config_is_one_editable_answer():
    config = labeling_config(generative_batch())
    assert '<Text name="question" value="$question" />' in config
    assert ('<TextArea name="star_label" toName="question" editable="true" maxSubmissions="1" '
            'required="true" rows="4" />') in config
    assert "<Choices" not in config


def test_config_escapes_what_xml_would_misread():
    batch = Batch(0, [BatchItem("x", {"q": "?"}, "p", "a", confidence=0.5)], ["a", "b"],
                  {"a": ' "yes" & <more>'})
    assert '<Choice value="&quot;yes&quot; &amp; &lt;more&gt;" alias="a" />' in labeling_config(batch)


def test_without_fields_the_prompt_is_shown():
    batch = Batch(0, [BatchItem("x", {}, "Say something:", " hi", confidence=0.5)])
    assert '<Text name="prompt" value="$prompt" />' in labeling_config(batch)
    assert labelstudio_tasks(batch, "v")[0]["predictions"][0]["result"][0]["to_name"] == "prompt"


# ---------------------------------------------------------------- recorded Label Studio exports


@pytest.mark.parametrize("name", ["choice.json", "choice-min.json", "choice.csv"])
def test_recorded_choice_exports(name):
    labels = read_labels(RECORDED / name)
    assert checked(labels, choice_batch()) == CHOICE_EXPECTED


def test_recorded_snapshot_export_names_annotators_by_email():
    labels = read_labels(RECORDED / "choice-emails.json")
    assert checked(labels, choice_batch()) == {"r1": ("1", ADMIN), "r2": ("0", ADMIN), "r4": ("1", BOB)}


@pytest.mark.parametrize("name", ["generative.json", "generative-min.json", "generative.csv"])
def test_recorded_generative_exports(name):
    labels = read_labels(RECORDED / name)
    assert checked(labels, generative_batch()) == GENERATIVE_EXPECTED


def test_recorded_export_where_names_file_and_task():
    labels = {label.id: label for label in read_labels(RECORDED / "choice.json")}
    assert labels["r4"].where.endswith("choice.json:task 4")
    labels = {label.id: label for label in read_labels(RECORDED / "generative.csv")}
    assert labels["g2"].where == f"{RECORDED / 'generative.csv'}:4"  # where its two-line row starts


def test_given_annotator_replaces_the_author():
    assert {label.annotator for label in read_labels(RECORDED / "choice-min.json", "carol")} == {"carol"}


def test_annotations_come_oldest_first_by_update_time_then_id(tmp_path):
    def annotation(id_, choice, created, updated=None, cancelled=False):
        return {"id": id_, "completed_by": {"id": 1, "email": "a@x"}, "was_cancelled": cancelled,
                "created_at": created, "updated_at": updated or created,
                "result": [{"from_name": "star_label", "to_name": "review", "type": "choices",
                            "value": {"choices": [choice]}}]}

    tasks = [{"id": 7, "data": {"star_id": "r1"}, "annotations": [
        annotation(1, "0", "2025-01-01T10:00:00.000001Z", "2025-01-03T10:00:00Z"),  # edited last
        annotation(2, "1", "2025-01-02T10:00:00.500000Z"),
        annotation(3, "1", "2025-01-04T10:00:00Z", cancelled=True),
    ]}, {"id": 8, "data": {"star_id": "r2"}, "annotations": [
        annotation(4, "1", "2025-01-01T10:00:00Z"), annotation(5, "0", "2025-01-01T10:00:00Z")]}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    # every annotation but the cancelled one, oldest first: the last per id is the newest
    assert [(label.id, label.value) for label in read_labels(path)] == [
        ("r2", "1"), ("r2", "0"), ("r1", "1"), ("r1", "0")]


def test_ground_truth_comes_last_and_other_controls_are_not_the_answer(tmp_path):
    def annotation(id_, choice, updated, ground_truth=False):
        return {"id": id_, "completed_by": id_, "ground_truth": ground_truth,
                "created_at": updated, "updated_at": updated,
                "result": [{"from_name": "note", "to_name": "review", "type": "textarea",
                            "value": {"text": ["not sure"]}},
                           {"from_name": "star_label", "to_name": "review", "type": "choices",
                            "value": {"choices": [choice]}}]}

    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"id": 1, "data": {"star_id": "r1"}, "annotations": [
        annotation(1, "1", "2025-01-01T10:00:00Z", ground_truth=True),
        annotation(2, "0", "2025-01-02T10:00:00Z")]}]))
    labels = read_labels(path)
    assert [(label.value, label.annotator) for label in labels] == [("0", "2"), ("1", "1")]
    assert labels[1].time == datetime(2025, 1, 1, 10, tzinfo=timezone.utc)


def test_a_json_min_answer_that_is_not_one_text_is_refused(tmp_path):
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"star_id": "r1", "annotation_id": 3,
                                 "star_label": {"choices": ["0", "1"]}}]))
    with pytest.raises(DataError, match=r"min.json:task 1: the 'star_label' answer is \{'choices'"):
        read_labels(path)


# ---------------------------------------------------------------- plain files


def test_plain_csv_and_jsonl(tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("id,value,annotator\nr1,positive,dana\nr2,,\nr3,0,\n")
    assert read_labels(table) == [ImportedLabel("r1", "positive", "dana", f"{table}:2"),
                                  ImportedLabel("r3", "0", "labels.csv", f"{table}:4")]
    semicolons = tmp_path / "excel.csv"  # as a European Excel saves it, with its BOM
    semicolons.write_text("\ufeffid;label\nr1;positive\nr2;\"a; b\"\n", encoding="utf-8")
    assert [(label.id, label.value) for label in read_labels(semicolons)] == [
        ("r1", "positive"), ("r2", "a; b")]
    lines = tmp_path / "labels.jsonl"
    lines.write_text('{"id": "r1", "label": "1"}\n\n{"id": 7, "label": 0}\n{"id": "r2", "label": null}\n')
    assert read_labels(lines, "eve") == [ImportedLabel("r1", "1", "eve", f"{lines}:1"),
                                         ImportedLabel("7", "0", "eve", f"{lines}:3")]


def test_written_batch_files_read_back_once_filled_in(tmp_path):
    batch = choice_batch()
    table = tmp_path / "batch.csv"
    write_batch(batch, table, "csv")
    assert table.read_bytes().startswith(b"\xef\xbb\xbfid,")  # a BOM, so that Excel reads UTF-8
    rows = list(csv.DictReader(table.open(newline="", encoding="utf-8-sig")))
    assert list(rows[0]) == ["id", "review", "product_name", "suggestion", "confidence", "uncertainty",
                             "label"]
    assert rows[3] == {"id": "r4", "review": "Fine, & <cheap>.", "product_name": "mug", "suggestion": "0",
                       "confidence": "0.62", "uncertainty": "", "label": ""}
    assert read_labels(table) == []  # nothing filled in yet
    rows[1]["label"] = "negative"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert checked(read_labels(table, "dana"), batch) == {"r2": ("0", "dana")}

    lines = tmp_path / "batch.jsonl"
    write_batch(batch, lines, "jsonl")
    first = json.loads(lines.read_text().splitlines()[0])
    assert first == {"id": "r1", "review": "Loved it, would buy again.", "product_name": "kettle",
                     "suggestion": "1", "confidence": 0.91, "uncertainty": 0.12, "label": ""}


def test_labelstudio_export_writes_tasks_and_config_beside(tmp_path):
    batch = generative_batch()
    write_batch(batch, tmp_path / "round-3.json", "labelstudio", "run-b/round-3")
    assert json.loads((tmp_path / "round-3.json").read_text()) == labelstudio_tasks(batch, "run-b/round-3")
    assert (tmp_path / "round-3.xml").read_text() == labeling_config(batch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-3.json", "round-3.xml"]  # no temp left
    with pytest.raises(ConfigError, match="labelstudio, csv, jsonl"):
        write_batch(batch, tmp_path / "x", "xlsx")


def test_a_labels_csv_with_quoted_fields(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text('id,label\ng1,"Paris,\n""the"" capitale née"\nr2,0\n', encoding="utf-8")
    assert [(label.id, label.value) for label in read_labels(path)] == [
        ("g1", "Paris,\n\"the\" capitale née"), ("r2", "0")]


# ---------------------------------------------------------------- malformed files


@pytest.mark.parametrize(("content", "message"), [
    (b'[{"data": {"star_id": "r1"}, "annotations": [\n  {"result": \n', r":3: not valid JSON"),
    (b'{"id": "r1", "label": "1"}\n{"id": "r2", "label": \n', r":2: malformed JSON"),
    (b'{"id": "r1", "label": "1"}\n{"id": "r2"}\n', r":2: expected an object with 'id' and 'label'"),
    (b"example,answer\nr1,1\n",
     r":1: expected columns 'id' and 'label' \(or 'value'\), found: example, answer"),
    (b"", r":1: expected columns 'id' and 'label'"),
    (b"id,label\nr1,1\nr2,0,extra\n", r":3: more cells than the header"),
    (b"id,label\nr1,caf\xe9\n", r":2: not UTF-8 text"),
    (b'[{"text": "hi"}]', r":1: a JSON list that is neither"),
    (b'{"a": 1}', r":1: expected an object with 'id' and 'label'"),
    (b'[{"id": 1, "data": {}, "annotations": [{"result": [{"type": "choices", '
     b'"value": {"choices": ["1"]}}]}]}]', r":task 1: no star_id"),
    (b'[{"id": 1, "data": {"star_id": "r1"}, "annotations": [{"result": [{"type": "choices", '
     b'"value": {"choices": ["0", "1"]}}]}]}]', r":task 1: expected one choice, found 2"),
    (b'[{"id": 1, "data": {"star_id": "r1"}, "annotations": [{"result": [], "id": 3}]}]',
     r":task 1: expected one choices or textarea answer, found 0"),
    (b'[{"star_id": "r1", "annotation_id": 4, "sentiment": "1"}]', r":task 1: no 'star_label' answer"),
    (b'[{"star_id": "r1", "annotation_id": 4, "star_label": "1", "updated_at": "yesterday"}]',
     r":task 1: 'yesterday' is not an ISO 8601 time"),
])
def test_malformed_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "labels.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as raised:
        read_labels(path)
    assert str(raised.value).startswith(f"{path}:")
    assert "\n" not in str(raised.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_labels(tmp_path / "nope.csv")
