"""`star labelstudio` against a real Label Studio (the session's, tests/labelstudio.py): two
full rounds labeled by two users through Label Studio's API, with STAR killed (kill -9)
mid-round and Label Studio restarted, replaying as a run labeled by files does; bad input to
`star labelstudio` and `star serve` stopping it in one line before anything is written; and,
against a stand-in for Label Studio, that an answer is counted only once it is fsynced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from star.active.journal import Answer
from star.active.runfolder import RunFolder
from star.annotate.labelstudio import LiveProject, Progress, _complete, connect
from star.tools.cli import main
from tests.labelstudio import ADMIN, FakeLabelStudio, Server, free_port, task_with
from tests.test_labeling_page import record_fsyncs, waiting_run
from tests.test_people import sample_label, write_labels_csv
from tests.test_serve import annotate, new_run, project_tasks, wait_until

CAROL = "carol@star.test"


def launch(run: Path, server: Server, log: Path) -> subprocess.Popen[bytes]:
    """`star labelstudio RUN --url URL --create` as a team runs it, in a process of its own."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "star", "labelstudio", str(run), "--url", server.url, "--create",
             "--poll", "0.3"], env={**os.environ, "LABEL_STUDIO_API_KEY": server.token},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def untimed(value: Any) -> Any:
    """`value` without its timings (every key that ends in 'seconds'), which no rerun repeats."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not k.endswith("seconds")}
    return [untimed(v) for v in value] if isinstance(value, list) else value


def lines(run: Path) -> list[Answer]:
    return RunFolder(run).journal.answers()


def other(label: str) -> str:
    return "negative" if label == "positive" else "positive"


def test_two_rounds_in_label_studio_survive_kill_9_and_a_restart_and_replay(
        label_studio, tiny_model_dir, tmp_path, pytestconfig):
    server, run = label_studio, new_run(tmp_path / "reviews", tiny_model_dir)
    carol = server.sign_up(CAROL)
    log = tmp_path / "star.log"
    started = time.monotonic()
    star = launch(run, server, log)
    wait_until(RunFolder(run).labelstudio_path.exists, 60, "the project to be created")
    project = json.loads(RunFolder(run).labelstudio_path.read_text())["project"]
    first = RunFolder(run).pending_batch()
    wait_until(lambda: len(project_tasks(server, project)) == 4, 60, "round 0's tasks")
    tasks = project_tasks(server, project)
    assert sorted(tasks) == sorted(first.ids)
    shown = server.call("GET", f"/api/tasks/{tasks[first.ids[0]]}")
    assert [(p["model_version"], p["score"]) for p in shown["predictions"]] == [
        ("reviews round 0", first.items[0].confidence)]

    ids = first.ids
    changed = annotate(server, tasks[ids[0]], sample_label(ids[0]))
    annotate(server, tasks[ids[1]], sample_label(ids[1]), carol)
    wait_until(lambda: len(lines(run)) == 2, 60, "two annotations journaled")
    star.send_signal(signal.SIGKILL)
    star.wait()
    # while STAR is dead: a new annotation, and a changed one
    annotate(server, tasks[ids[2]], sample_label(ids[2]))
    server.call("PATCH", f"/api/annotations/{changed['id']}/", {"result": [
        {"from_name": "star_label", "to_name": "text", "type": "choices",
         "value": {"choices": [other(sample_label(ids[0]))]}}]})
    star = launch(run, server, log)  # the same command again
    wait_until(lambda: len(lines(run)) == 4, 60, "the annotations made meanwhile")
    restart = time.monotonic()
    server.restart()  # Label Studio goes away under the watching STAR and comes back
    restart = time.monotonic() - restart
    annotate(server, tasks[ids[3]], sample_label(ids[3]), carol)

    wait_until(lambda: len(project_tasks(server, project)) == 8, 180, "round 1's tasks")
    star.send_signal(signal.SIGINT)  # Ctrl+C: a clean stop with a summary, and the same command again
    assert star.wait(timeout=60) == 0
    assert "stopped (Ctrl+C); the same command goes on from here. " in log.read_text()
    star = launch(run, server, log)
    second = RunFolder(run).pending_batch()
    tasks, later = project_tasks(server, project), second.ids
    annotate(server, tasks[later[0]], sample_label(later[0]), carol)
    doomed = annotate(server, tasks[later[1]], other(sample_label(later[1])))
    wait_until(lambda: len(lines(run)) == 7, 60, "the annotation to be deleted")
    server.call("DELETE", f"/api/annotations/{doomed['id']}/")
    wait_until(lambda: len(lines(run)) == 8, 60, "the deletion")
    annotate(server, tasks[later[1]], sample_label(later[1]), carol)
    annotate(server, tasks[later[2]], sample_label(later[2]))
    annotate(server, tasks[later[3]], sample_label(later[3]), carol)
    assert star.wait(timeout=300) == 0, log.read_text()
    wall = time.monotonic() - started
    said = log.read_text()
    assert "round 0: answered 4 of 4, last answer " in said and "round 1: answered 4 of 4" in said
    assert f"budget spent: {run}: 2 rounds, 8 labels, accuracy " in said

    got = [(a.id, a.value, a.annotator, a.round, a.source) for a in lines(run)]
    assert got == [
        (ids[0], sample_label(ids[0]), ADMIN, 0, "labelstudio"),
        (ids[1], sample_label(ids[1]), CAROL, 0, "labelstudio"),
        (ids[0], other(sample_label(ids[0])), ADMIN, 0, "labelstudio"),  # changed while STAR was dead
        (ids[2], sample_label(ids[2]), ADMIN, 0, "labelstudio"),
        (ids[3], sample_label(ids[3]), CAROL, 0, "labelstudio"),
        (later[0], sample_label(later[0]), CAROL, 1, "labelstudio"),
        (later[1], other(sample_label(later[1])), ADMIN, 1, "labelstudio"),
        (later[1], None, ADMIN, 1, "labelstudio"),  # its annotation deleted: no answer in force
        (later[1], sample_label(later[1]), CAROL, 1, "labelstudio"),
        (later[2], sample_label(later[2]), ADMIN, 1, "labelstudio"),
        (later[3], sample_label(later[3]), CAROL, 1, "labelstudio")]
    refs = [a.ref for a in lines(run)]
    assert refs[2] == refs[0] and refs[7] == refs[6] and len(set(refs)) == 9
    assert all(ref.startswith(f"{project}/") for ref in refs)
    assert len(project_tasks(server, project)) == 8  # no task pushed twice
    assert server.token not in said  # the key: never printed, never written into the run
    assert not [name for name, data in files(run).items() if server.token.encode() in data]

    # The same labels given as files (star import, star next) give the same run.
    replay = new_run(tmp_path / "replay", tiny_model_dir)
    labels = {i: a.value for i, a in RunFolder(run).journal.latest().items()}
    for k, batch in enumerate((first, second)):
        answers = {i: labels[i] for i in batch.ids}
        assert main(["import", str(replay), str(write_labels_csv(tmp_path / f"{k}.csv", answers))]) == 0
        assert main(["next", str(replay)]) == 0
    live, filed = (json.loads((r / "results.json").read_text())["rounds"] for r in (run, replay))
    assert untimed(live) == untimed(filed)
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\nstar labelstudio, two rounds against Label Studio: {wall:.0f} s wall time, of which "
              f"{restart:.0f} s Label Studio's restart")


@pytest.fixture(scope="module")
def waiting(tiny_model_dir, tmp_path_factory) -> Path:
    return new_run(tmp_path_factory.mktemp("live") / "reviews", tiny_model_dir)


def files(run: Path) -> dict[str, bytes]:
    """Every file of the run and its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def refuse_to_load(folder: RunFolder) -> None:
    raise AssertionError("star serve went on to load the model: its checks let bad input through")


def stopped(run: Path, args: list[str], capsys: Any) -> str:
    """`star ARGS` exits 2 with one line (its error) and leaves every file of `run` as it was.
    The lock file is removed first: a command that took the lock would leave one."""
    (run / ".lock").unlink(missing_ok=True)
    before = files(run)
    assert main(args) == 2
    assert files(run) == before
    out, err = capsys.readouterr()
    assert err.startswith("star: error: ") and err.count("\n") == 1, err
    key = os.environ.get("LABEL_STUDIO_API_KEY")
    assert not key or key not in out + err
    return err


BAD_INPUT = {
    "no key": "set LABEL_STUDIO_API_KEY to your Label Studio access token",
    "unreachable": "does not answer to a check of the key",
    "wrong key": "refused the key in LABEL_STUDIO_API_KEY to a check of the key (401: Invalid token.)",
    "no such project": "refused reading project 99999 (404: No Project matches the given query.)",
    "another config": "has another labeling config than this run's",
}


@pytest.mark.parametrize(("command", "case"), [
    (command, case) for command in ("labelstudio", "serve") for case in BAD_INPUT
    if (command, case) != ("serve", "no key")])  # without a key, star serve serves unlinked
def test_bad_input_stops_in_one_line_and_writes_nothing(label_studio, waiting, monkeypatch, capsys, command,
                                                        case):
    """`star labelstudio --project ID`, and `star serve` in a run linked to that project."""
    url, project = label_studio.url, 99999
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong" if case == "wrong key" else label_studio.token)
    monkeypatch.setattr("star.annotate.backend.Model", refuse_to_load)
    if case == "no key":
        monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    if case == "unreachable":
        url = f"http://127.0.0.1:{free_port()}"
    if case == "another config":
        other_config = '<View><Text name="text" value="$text"/></View>'
        project = label_studio.call("POST", "/api/projects", {"title": "someone else's",
                                                              "label_config": other_config})["id"]
    link = RunFolder(waiting).labelstudio_path
    if command == "serve":
        link.write_text(json.dumps({"url": url, "project": project}))
        args = ["serve", str(waiting), "--port", "0"]
    else:
        args = ["labelstudio", str(waiting), "--url", url, "--project", str(project)]
    try:
        assert BAD_INPUT[case] in stopped(waiting, args, capsys)
    finally:
        link.unlink(missing_ok=True)  # the other tests link the run themselves


@pytest.mark.parametrize("command", ["labelstudio --project", "labelstudio", "serve"])
def test_a_label_outside_the_set_stops_it_and_writes_nothing(label_studio, waiting, monkeypatch, capsys,
                                                              command):
    """In a project that holds the batch's tasks (pushed by STAR or imported from `star batch`):
    `star labelstudio --project ID` in a run not linked yet (no link is written), the same
    command again in a linked run, and `star serve` in a linked run."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setattr("star.annotate.backend.Model", refuse_to_load)
    folder = RunFolder(waiting)
    live = connect(folder, label_studio.url, None, create=True)
    batch = folder.pending_batch()
    assert (live.push(batch), live.push(batch)) == (4, 0)  # pushed again after a crash: nothing
    tasks = project_tasks(label_studio, live.project)
    annotate(label_studio, tasks[batch.ids[0]], sample_label(batch.ids[0]))
    annotate(label_studio, tasks[batch.ids[1]], "maybe")
    args = {"labelstudio --project": ["labelstudio", str(waiting), "--url", label_studio.url,
                                      "--project", str(live.project)],
            "labelstudio": ["labelstudio", str(waiting), "--url", label_studio.url, "--create"],
            "serve": ["serve", str(waiting), "--port", "0"]}[command]
    if command == "labelstudio --project":
        folder.labelstudio_path.unlink()
    try:
        err = stopped(waiting, args, capsys)
    finally:
        folder.labelstudio_path.unlink(missing_ok=True)  # the other tests link the run themselves
    assert f"label 'maybe' for id '{batch.ids[1]}' is not one of: positive" in err
    assert folder.journal.answers() == []  # the good annotation waits with the bad one


def test_an_answer_is_counted_only_once_it_is_fsynced(tmp_path, monkeypatch):
    """The status line is what `star labelstudio` acknowledges with: each count it shows was
    fsynced to the journal first. Two looks at the project: two answers, then a third task
    annotated twice (both journaled, oldest first: the newer one is in force)."""
    folder = RunFolder(waiting_run(tmp_path))  # round 0 waits for e0, e1, e2: 0 negative, 1 positive
    batch = folder.pending_batch()
    two = [task_with(0, "e0", "1"), task_with(1, "e1", "negative"), task_with(2, "e2")]
    client = FakeLabelStudio([], two, [*two[:2], task_with(2, "e2", "0", "1")])
    events: list[tuple[str, Any]] = []
    record_fsyncs(monkeypatch, folder.journal.path, events)
    monkeypatch.setattr(Progress, "show", lambda self, key, text: events.append(("shown", text)))
    assert _complete(LiveProject(folder, client, 1), batch, Progress(), poll=0.0)
    assert [(kind, str(what).split(",")[0]) for kind, what in events] == [
        ("fsync", "2"), ("shown", "round 0: answered 2 of 3"),
        ("fsync", "4"), ("shown", "round 0: answered 3 of 3")]
    assert [task["data"]["star_id"] for task in client.imported] == batch.ids  # pushed once, first
    assert [(a.id, a.value, a.annotator, a.source, a.ref, a.time) for a in folder.journal.answers()] == [
        ("e0", "1", "carol@star.test", "labelstudio", "1/0", "2025-06-01T10:00:00+00:00"),
        ("e1", "0", "carol@star.test", "labelstudio", "1/100", "2025-06-01T10:00:00+00:00"),
        ("e2", "0", "carol@star.test", "labelstudio", "1/200", "2025-06-01T10:00:00+00:00"),
        ("e2", "1", "carol@star.test", "labelstudio", "1/201", "2025-06-01T10:00:01+00:00")]
