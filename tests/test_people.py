"""People as annotators: the README's cycle on the shipped sample, imports that are checked
whole, and one code path for the oracle and for people (same picks, same accuracies)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from star.active.journal import Answer, now
from star.active.runfolder import RunFolder
from star.annotate.server import LabelingServer
from star.tools.cli import main
from star.tools.labels import page_server
from tests.conftest import toy_records, write_jsonl

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "reviews"
TINY = ["model.dtype=float32", "model.max_length=64", "lora.r=4", "lora.alpha=8",
        "train.epochs=1", "uncertainty.batch_size=16"]


def star(args: list[str]) -> int:
    """The `star` command with these words, as the shell would call it; its exit code."""
    return main(args)


def sets(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


def sample_label(example_id: str) -> str:
    """The sample pool alternates positive (even ids) and negative reviews."""
    return "positive" if int(example_id[1:]) % 2 == 0 else "negative"


def waiting_ids(run: Path) -> list[str]:
    return RunFolder(run).pending_batch().ids


def write_labels_csv(path: Path, labels: dict[str, str]) -> Path:
    path.write_text("id,label\n" + "".join(f"{i},{v}\n" for i, v in labels.items()))
    return path


@contextmanager
def open_page(run: Path) -> Iterator[LabelingServer]:
    """`star label`'s server for the batch waiting in `run`, serving until the block ends."""
    server = page_server(run, "bob")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


def post(url: str, body: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """What the browser page sends: a JSON POST; the status and the JSON reply."""
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def label_through_the_page(run: Path, labels: dict[str, str]) -> None:
    """What the browser page does, through the same HTTP API: one POST per answer."""
    with open_page(run) as page:
        for example_id, value in labels.items():
            assert post(page.url + "api/answer", {"id": example_id, "value": value})[0] == 200


def test_the_readme_cycle_on_the_sample_for_two_rounds(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "reviews"
    config = str(SAMPLE / "config.yaml")
    args = ["run", config, "--out", str(run),
            *sets([f"model.name={tiny_model_dir}", f"task.data_dir={SAMPLE}", *TINY])]
    assert star(args) == 0
    out = capsys.readouterr().out
    assert "round 0: waiting for 4 of 4 labels" in out and f"star next {run}" in out
    results = json.loads((run / "results.json").read_text())
    assert results["rounds"] == [] and results["waiting"]["labels"] == 4

    first = {i: sample_label(i) for i in waiting_ids(run)}
    assert star(["import", str(run), str(write_labels_csv(tmp_path / "r0.csv", first))]) == 0
    assert star(["next", str(run)]) == 0
    assert "round 1: waiting for 4 of 4 labels" in capsys.readouterr().out

    second = {i: sample_label(i) for i in waiting_ids(run)}
    label_through_the_page(run, second)
    assert star(["status", str(run)]) == 0
    assert "all 4 labels are in" in capsys.readouterr().out
    assert star(["next", str(run)]) == 0

    results = json.loads((run / "results.json").read_text())
    assert [r["n_labeled"] for r in results["rounds"]] == [4, 8]
    assert [r["selected_ids"] for r in results["rounds"]] == [list(first), list(second)]
    assert results["rounds"][1]["label_counts"] == dict(sorted(
        {v: list({**first, **second}.values()).count(v) for v in {**first, **second}.values()}
        .items()))
    journal = RunFolder(run).journal.answers()
    assert [(a.id, a.value, a.source, a.round) for a in journal] == [
        *[(i, v, "import", 0) for i, v in first.items()],
        *[(i, v, "page", 1) for i, v in second.items()]]
    assert {a.annotator for a in journal[4:]} == {"bob"}
    assert len(waiting_ids(run)) == 4  # round 2 waits: the budget is 12

    exported = tmp_path / "export"
    assert star(["export", str(run), "--out", str(exported)]) == 0
    rows = [json.loads(line) for line in (exported / "labeled.jsonl").read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in rows] == [*first.items(), *second.items()]
    assert rows[0]["response"] == " " + rows[0]["label"] and rows[0]["text"]
    from datasets import load_from_disk
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert load_from_disk(str(exported / "dataset"))["label"] == [r["label"] for r in rows]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                      exported / "adapter")
    assert any("lora_B" in name for name, _ in model.named_parameters())
    weights = "adapter/adapter_model.safetensors"
    assert (exported / weights).read_bytes() == (run / "rounds" / "1" / weights).read_bytes()
    assert json.loads((exported / "export.json").read_text()) == {
        "labels": 8, "complete_rounds": 2, "adapter_round": 1}


@pytest.fixture
def waiting_run(tiny_model_dir, tmp_path) -> Path:
    run = tmp_path / "reviews"
    assert star(["run", str(SAMPLE / "config.yaml"), "--out", str(run),
                 *sets([f"model.name={tiny_model_dir}", f"task.data_dir={SAMPLE}", *TINY])]) == 0
    return run


@pytest.mark.parametrize(("rows", "message"), [
    (lambda ids: f"id,label\n{ids[0]},positive\n{ids[1]},maybe\n",
     ":3: label 'maybe' for id"),
    (lambda ids: f"id,label\n{ids[0]},positive\nr99x,negative\n", ":3: id 'r99x' is not in the batch"),
    (lambda ids: "id,label\nr00,positive\n" if "r00" not in ids else "id,label\nr02,positive\n",
     "is not in the batch of round 0"),
    (lambda ids: "this is not a label file\n", "labels.csv"),
])
def test_a_bad_import_names_file_and_line_and_writes_nothing(waiting_run, tmp_path, capsys, rows,
                                                            message):
    ids = waiting_ids(waiting_run)
    path = tmp_path / "labels.csv"
    path.write_text(rows(ids))
    assert star(["import", str(waiting_run), str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert RunFolder(waiting_run).journal.answers() == []


def test_a_finished_rounds_label_is_left_out_when_equal_and_refused_when_changed(waiting_run, tmp_path,
                                                                                 capsys):
    first = {i: sample_label(i) for i in waiting_ids(waiting_run)}
    star(["import", str(waiting_run), str(write_labels_csv(tmp_path / "a.csv", first))])
    assert star(["next", str(waiting_run)]) == 0
    before = RunFolder(waiting_run).journal.answers()
    old = next(iter(first))
    flipped = "negative" if first[old] == "positive" else "positive"
    capsys.readouterr()
    assert star(["import", str(waiting_run), str(write_labels_csv(tmp_path / "b.csv", {old: flipped}))]) == 2
    assert (f"id '{old}' belongs to round 0, which trained on '{first[old]}'; this file says "
            f"'{flipped}', and a finished round's label cannot change (round 1 waits for labels)"
            in capsys.readouterr().err)
    # a whole project's export: round 0's labels as trained, and two of round 1's
    second = dict(list({i: sample_label(i) for i in waiting_ids(waiting_run)}.items())[:2])
    assert star(["import", str(waiting_run),
                 str(write_labels_csv(tmp_path / "c.csv", {**first, **second}))]) == 0
    assert (f"2 labels imported into {waiting_run} (4 of finished rounds, as trained left out)"
            in capsys.readouterr().out)
    assert RunFolder(waiting_run).journal.answers()[:len(before)] == before
    assert len(RunFolder(waiting_run).journal.answers()) == len(before) + 2


def labelstudio_export(path: Path, annotations: list[tuple[str, str, str, str]]) -> Path:
    """A Label Studio JSON export of star's tasks: (id, label, author, updated_at) per annotation."""
    tasks: dict[str, dict[str, Any]] = {}
    for n, (example_id, label, author, updated) in enumerate(annotations, 1):
        task = tasks.setdefault(example_id, {"id": len(tasks) + 1, "data": {"star_id": example_id},
                                             "annotations": []})
        task["annotations"].append({
            "id": n, "completed_by": {"id": n, "email": author}, "was_cancelled": False,
            "created_at": updated, "updated_at": updated,
            "result": [{"from_name": "star_label", "to_name": "text", "type": "choices",
                        "value": {"choices": [label]}},
                       {"from_name": "comment", "to_name": "text", "type": "textarea",
                        "value": {"text": ["a note, not the answer"]}}]})
    path.write_text(json.dumps(list(tasks.values())))
    return path


def test_labelstudio_exports_keep_every_annotator_and_never_undo_a_newer_answer(waiting_run, tmp_path,
                                                                                capsys):
    """Two annotators per task: both answers are journaled, oldest first, so the newer is in
    force and their agreement shows; importing the same export again adds nothing; an answer
    corrected on the page since the export is kept."""
    a, b, c, d = waiting_ids(waiting_run)
    export = labelstudio_export(tmp_path / "ls.json", [
        (a, "positive", "ann@x", "2025-01-01T10:00:00Z"), (a, "negative", "ben@x", "2025-01-01T11:00:00Z"),
        (b, "negative", "ben@x", "2025-01-01T09:00:00Z"), (b, "negative", "ann@x", "2025-01-01T12:00:00Z"),
        (c, "positive", "ann@x", "2025-01-01T10:30:00Z")])
    assert star(["import", str(waiting_run), str(export)]) == 0
    journal = RunFolder(waiting_run).journal
    assert [(x.id, x.value, x.annotator, x.time) for x in journal.answers()] == [
        (b, "negative", "ben@x", "2025-01-01T09:00:00+00:00"),
        (a, "positive", "ann@x", "2025-01-01T10:00:00+00:00"),
        (c, "positive", "ann@x", "2025-01-01T10:30:00+00:00"),
        (a, "negative", "ben@x", "2025-01-01T11:00:00+00:00"),
        (b, "negative", "ann@x", "2025-01-01T12:00:00+00:00")]
    assert {i: x.value for i, x in journal.latest().items()} == {a: "negative", b: "negative", c: "positive"}
    with open_page(waiting_run) as page:  # carol corrects c now, after the export was made
        assert post(page.url + "api/answer", {"id": c, "value": "negative"})[0] == 200
    capsys.readouterr()
    assert star(["import", str(waiting_run), str(export)]) == 0
    assert (f"0 labels imported into {waiting_run} (5 unchanged left out)" in capsys.readouterr().out)
    assert journal.latest()[c].value == "negative"
    later = labelstudio_export(tmp_path / "ls2.json", [(c, "positive", "dan@x", "2025-01-01T13:00:00Z"),
                                                       (d, "positive", "dan@x", "2025-01-01T13:00:00Z")])
    assert star(["import", str(waiting_run), str(later)]) == 0
    assert (f"1 labels imported into {waiting_run} (1 older than the answer in force left out)"
            in capsys.readouterr().out)
    assert journal.latest()[c].value == "negative" and journal.latest()[d].value == "positive"
    assert star(["status", str(waiting_run)]) == 0
    # ann and ben both answered a and b: ann (positive, negative), ben (negative, negative).
    # p_o = 1/2 (b only); p_e = P(ann pos)·P(ben pos) + P(ann neg)·P(ben neg) = 0 + 1/2 · 1
    # = 1/2; κ = (1/2 − 1/2) / (1 − 1/2) = 0
    assert "ann@x vs ben@x: κ = 0.000 on 2 examples" in capsys.readouterr().out


def test_a_page_left_open_cannot_change_the_labels_its_round_trained_on(waiting_run):
    """Round 0 is labeled on a page that stays open while `star next` trains on its answers:
    from then on that page refuses both a new answer and an undo, and the journal stays as it
    was, so round 1 still replays what round 0 trained on."""
    first = {i: sample_label(i) for i in waiting_ids(waiting_run)}
    old = next(iter(first))
    flipped = "negative" if first[old] == "positive" else "positive"
    with open_page(waiting_run) as page:
        for example_id, value in first.items():
            assert post(page.url + "api/answer", {"id": example_id, "value": value})[0] == 200
        assert star(["next", str(waiting_run)]) == 0
        journal = RunFolder(waiting_run).journal.answers()
        for path, body in (("api/answer", {"id": old, "value": flipped}), ("api/undo", {})):
            status, reply = post(page.url + path, body)
            assert status == 400
            assert reply["error"] == (f"page: round 0 has ended and trained on these answers, which "
                                      f"can no longer change; close this page (the run goes on "
                                      f"with: star next {waiting_run})")
        assert RunFolder(waiting_run).journal.answers() == journal
    second = {i: sample_label(i) for i in waiting_ids(waiting_run)}
    label_through_the_page(waiting_run, second)
    assert star(["next", str(waiting_run)]) == 0
    rounds = json.loads((waiting_run / "results.json").read_text())["rounds"]
    assert [r["n_labeled"] for r in rounds] == [4, 8]


def test_no_answer_changes_while_star_next_holds_the_run(waiting_run, tmp_path, capsys):
    """While `star next` holds the run (it may be training on the batch's answers), the page
    refuses answers and `star import` waits its turn; both work again once it is done."""
    ids = waiting_ids(waiting_run)
    with open_page(waiting_run) as page:
        with RunFolder(waiting_run).lock():  # what `star next` holds while it runs
            status, reply = post(page.url + "api/answer", {"id": ids[0], "value": "positive"})
            assert status == 400 and reply["error"] == (
                "page: `star next` is using the run now and may be training on these answers, "
                "which cannot change meanwhile; try again once it has finished")
            labels = write_labels_csv(tmp_path / "a.csv", {ids[1]: "negative"})
            assert star(["import", str(waiting_run), str(labels)]) == 2
            assert "is in use by process" in capsys.readouterr().err
            assert RunFolder(waiting_run).journal.answers() == []
        assert post(page.url + "api/answer", {"id": ids[0], "value": "positive"})[0] == 200
    assert star(["import", str(waiting_run), str(labels)]) == 0
    assert {i: a.value for i, a in RunFolder(waiting_run).journal.latest().items()} == {
        ids[0]: "positive", ids[1]: "negative"}


def test_a_label_retracted_behind_stars_back_is_named(waiting_run, tmp_path, capsys):
    """The journal edited by hand so that a trained label has no answer in force: the next
    round and the export stop with one line naming the example, not a KeyError."""
    first = {i: sample_label(i) for i in waiting_ids(waiting_run)}
    star(["import", str(waiting_run), str(write_labels_csv(tmp_path / "a.csv", first))])
    assert star(["next", str(waiting_run)]) == 0
    old = next(iter(first))
    journal = RunFolder(waiting_run).journal
    journal.append([Answer(old, None, "mallory", 0, source="page", time=now())])
    label_through_the_page(waiting_run, {i: sample_label(i) for i in waiting_ids(waiting_run)})
    capsys.readouterr()
    expected = (f"{journal.path}: 1 labeled examples have no answer in force (first: '{old}'): "
                "their answers were retracted after a round trained on them, so the run cannot "
                "replay its rounds")
    for command in (["next", str(waiting_run)], ["export", str(waiting_run), "--out", str(tmp_path / "x")]):
        assert star(command) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err


def test_a_damaged_journal_line_is_named_with_its_number(waiting_run, capsys):
    journal = RunFolder(waiting_run).journal
    journal.path.write_text('{"id": "r01", "value": "positive", "annotator": "a", "round": 0, '
                            '"source": "page"}\n{"id": "r02", "valu\n')
    assert star(["status", str(waiting_run)]) == 2
    assert f"{journal.path}:2: not a journal line" in capsys.readouterr().err


@pytest.mark.parametrize(("strategy", "response", "why"), [
    ("pe-star", "own", "its measure is PE"),
    ("me-star", "gold", "uncertainty.response is 'gold'"),
])
def test_a_strategy_that_reads_gold_answers_is_refused_for_people(tiny_model_dir, tmp_path, capsys,
                                                                  strategy, response, why):
    """People label what the loop picks, so nothing the loop scores has a gold answer yet."""
    run = tmp_path / "run"
    assert star(["run", str(SAMPLE / "config.yaml"), "--out", str(run), "--strategy", strategy,
                 *sets([f"model.name={tiny_model_dir}", f"task.data_dir={SAMPLE}",
                        f"uncertainty.response={response}", *TINY])]) == 2
    err = capsys.readouterr().err
    assert (f"strategy '{strategy}' scores the gold answers of unlabeled examples ({why}), which "
            "people have not given yet; use a label-free strategy (e.g. me-star) with "
            "uncertainty.response: own") in err and "Traceback" not in err


def test_later_answer_wins_and_agreement_is_shown(waiting_run, tmp_path, capsys):
    ids = waiting_ids(waiting_run)
    alice = {i: "positive" for i in ids}
    bob = {i: ("negative" if n == 0 else "positive") for n, i in enumerate(ids)}
    star(["import", str(waiting_run), str(write_labels_csv(tmp_path / "a.csv", alice)),
          "--annotator", "alice"])
    star(["import", str(waiting_run), str(write_labels_csv(tmp_path / "b.csv", bob)),
          "--annotator", "bob"])
    assert RunFolder(waiting_run).journal.latest()[ids[0]].value == "negative"
    assert star(["status", str(waiting_run)]) == 0
    # alice all positive, bob 3 of 4: p_o = 3/4, p_e = 1·3/4 = 3/4 -> κ = 0
    assert "alice vs bob: κ = 0.000 on 4 examples" in capsys.readouterr().out


def test_oracle_and_people_take_one_code_path(tiny_model_dir, tmp_path):
    """One config, labeled by the oracle and by people who answer every batch with the gold
    labels (by import): the same picks and the same accuracies, round for round."""
    data = tmp_path / "data"
    data.mkdir()
    records = [{"id": f"x{n}", **r} for n, r in enumerate(toy_records(60, 0))]
    write_jsonl(data / "train.jsonl", records)
    write_jsonl(data / "test.jsonl", toy_records(16, 1))
    gold = {r["id"]: r["answer"] for r in records}
    common = ["--strategy", "me-star", *sets([
        f"model.name={tiny_model_dir}", "task.name=custom", f"task.data_dir={data}",
        "task.prompt='Question: {question}\\nAnswer:'", "task.labels=[yes, no]", *TINY,
        "train.batch_size=8", "train.lr=1e-3", "loop.warm_start=8", "loop.step=8",
        "loop.budget=24"])]
    assert star(["run", "--out", str(tmp_path / "oracle"), *common]) == 0
    people = tmp_path / "people"
    assert star(["run", "--out", str(people), "--annotator", "people", *common]) == 0
    for k in range(3):
        labels = {i: gold[i] for i in waiting_ids(people)}
        assert star(["import", str(people), str(write_labels_csv(tmp_path / f"{k}.csv", labels))]) == 0
        assert star(["next", str(people)]) == 0
    a, b = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("oracle", "people"))
    assert [r["selected_ids"] for r in a["rounds"]] == [r["selected_ids"] for r in b["rounds"]]
    assert [r["accuracy"] for r in a["rounds"]] == [r["accuracy"] for r in b["rounds"]]
    assert a["auc"] == b["auc"] and len(a["rounds"]) == 3


def test_people_label_a_generative_task_by_correcting_drafts(tiny_model_dir, tmp_path):
    """A text task: the batch offers the model's draft answers; people's corrected text is what
    the adapter trains on (its response is the annotator's text, gold its normalised form)."""
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", [{"id": f"q{n}", "question": r["question"]}
                                       for n, r in enumerate(toy_records(12, 0))])
    run = tmp_path / "run"
    assert star(["run", "--out", str(run), "--annotator", "people", "--strategy", "me", *sets([
        f"model.name={tiny_model_dir}", "task.name=custom", f"task.data_dir={data}",
        "task.test_file=null", "task.prompt='Question: {question}\\nAnswer:'",
        "task.answer_type=text", "task.max_new_tokens=4", *TINY, "loop.warm_start=3",
        "loop.step=3", "loop.budget=6", "loop.stop_set_size=5"])]) == 0
    batch = RunFolder(run).pending_batch()
    assert batch.generative and all(isinstance(item.suggestion, str) for item in batch.items)
    corrected = {item.id: f"the words {item.id}" for item in batch.items}
    label_through_the_page(run, corrected)
    assert star(["next", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    first = results["rounds"][0]
    assert first["accuracy"] is None and results["auc"] is None and first["agreement"] is None
    assert sorted(first["label_counts"]) == sorted(corrected.values())
    assert len(RunFolder(run).read_predictions(0)) == 5  # the stop set stands in for a test set


def test_batch_export_filled_in_a_spreadsheet_imports_back(waiting_run, tmp_path, capsys):
    """`star batch` for other tools: Label Studio tasks with their labeling config, and a CSV
    whose empty `label` column a person fills in and `star import` reads back."""
    tasks = tmp_path / "tasks.json"
    assert star(["batch", str(waiting_run), "--format", "labelstudio", "--out", str(tasks)]) == 0
    exported = json.loads(tasks.read_text())
    ids = waiting_ids(waiting_run)
    assert [t["data"]["star_id"] for t in exported] == ids
    assert all(t["predictions"][0]["model_version"] == "reviews round 0" for t in exported)
    assert 'alias="positive"' in (tmp_path / "tasks.xml").read_text()

    sheet = tmp_path / "batch.csv"
    assert star(["batch", str(waiting_run), "--format", "csv", "--out", str(sheet)]) == 0
    header, *rows = sheet.read_text(encoding="utf-8-sig").splitlines()
    assert header.startswith("id,") and header.endswith(",label") and len(rows) == 4
    sheet.write_text("\n".join([header, *[row + sample_label(row.split(",")[0]) for row in rows]]))
    assert star(["import", str(waiting_run), str(sheet), "--annotator", "carol"]) == 0
    latest = RunFolder(waiting_run).journal.latest()
    assert {i: latest[i].value for i in ids} == {i: sample_label(i) for i in ids}
    assert {latest[i].annotator for i in ids} == {"carol"}
