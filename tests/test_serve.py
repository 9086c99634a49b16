"""`star serve`: the ML backend protocol on a tiny model (predictions equal the loop's own
guesses, Basic Auth, a full queue, Start training), what its replies acknowledge (against a
stand-in for Label Studio), then Label Studio itself calling it."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from star.active.journal import Answer, now
from star.active.runfolder import RunFolder
from star.annotate import backend as backend_module
from star.annotate.backend import QUEUE, Backend, Model
from star.annotate.exchange import labeling_config, labelstudio_tasks
from star.annotate.labelstudio import LiveProject, connect
from star.tools.cli import main
from tests.labelstudio import FakeLabelStudio, Server, task_with
from tests.test_labeling_page import record_fsyncs, record_replies, waiting_run
from tests.test_people import SAMPLE, TINY, sample_label, sets

USER, PASSWORD = "ls", "s3cret-of-the-test"


def new_run(folder: Path, model_dir: Path) -> Path:
    """The sample's people run on the tiny model, waiting for round 0's 4 labels (budget 8)."""
    assert main(["run", str(SAMPLE / "config.yaml"), "--out", str(folder),
                 *sets([f"model.name={model_dir}", f"task.data_dir={SAMPLE}", *TINY, "loop.budget=8"])]) == 0
    return folder


@contextmanager
def serving(run: Path, user: str | None = USER, live: Any = None) -> Iterator[Backend]:
    folder = RunFolder(run)
    backend = Backend(folder, Model(folder), live, user=user, password=PASSWORD if user else None)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        yield backend
    finally:
        backend.shutdown()


def request(url: str, body: Any = None, auth: tuple[str, str] | None = (USER, PASSWORD),
            headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """One call as Label Studio makes it (requests' `json=` and Basic Auth); status and reply."""
    sent = {"Content-Type": "application/json"} if body is not None or raw is not None else {}
    if auth:
        sent["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    call = urllib.request.Request(url, data=data, headers={**sent, **(headers or {})},
                                  method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def predict_body(run: Path, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    batch = RunFolder(run).pending_batch()
    return {"tasks": tasks, "label_config": labeling_config(batch), "project": "1.1700000000"}


def guessed(results: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(r["result"][0]["value"]["choices"][0], r["score"]) for r in results]


def suggestions(run: Path) -> list[tuple[str, float]]:
    return [(item.suggestion, item.confidence) for item in RunFolder(run).pending_batch().items]


def answer_all(run: Path) -> None:
    folder = RunFolder(run)
    batch = folder.pending_batch()
    folder.journal.append([Answer(i, sample_label(i), "ann", batch.round, "page", now()) for i in batch.ids])


def wait_until(condition: Any, seconds: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def annotate(server: Server, task: int, label: str, token: str | None = None) -> dict[str, Any]:
    """An annotation made through Label Studio's API by the user whose token it is (the admin's
    by default)."""
    result = [{"from_name": "star_label", "to_name": "text", "type": "choices",
               "value": {"choices": [label]}}]
    return server.call("POST", f"/api/tasks/{task}/annotations/", {"result": result, "lead_time": 2.0},
                       token=token)


def project_tasks(server: Server, project: int) -> dict[str, int]:
    """The project's tasks by star_id (the team's own tasks, without one, under their task id)."""
    listed = server.call("GET", f"/api/tasks?project={project}&page_size=1000")["tasks"]
    tasks = {task["data"].get("star_id", str(task["id"])): task["id"] for task in listed}
    assert len(tasks) == len(listed), "a task was pushed twice"
    return tasks


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory) -> Path:
    return new_run(tmp_path_factory.mktemp("serve") / "reviews", tiny_model_dir)


def test_predictions_are_the_loops_own_guesses_before_and_after_start_training(tiny_model_dir, tmp_path):
    run = new_run(tmp_path / "reviews", tiny_model_dir)
    batch = RunFolder(run).pending_batch()
    with serving(run) as backend:
        assert request(backend.origin + "/health") == (
            200, {"status": "UP", "model_version": "reviews round 0"})
        assert request(backend.origin + "/setup", {"project": "1.1", "schema": "<View/>"}) == (
            200, {"model_version": "reviews round 0"})
        tasks = labelstudio_tasks(batch, "")
        # a task of the team's own: no star_id, only the prompt (here the first example's)
        tasks.append({"id": 99, "data": {"text": "x", "prompt": batch.items[0].prompt}})
        status, reply = request(backend.origin + "/predict", predict_body(run, tasks))
        assert status == 200 and reply["model_version"] == "reviews round 0"
        assert [r["model_version"] for r in reply["results"]] == ["reviews round 0"] * 5
        assert reply["results"][0]["result"][0]["to_name"] == "text"
        expected = [*suggestions(run), suggestions(run)[0]]  # what the loop showed for round 0
        assert [g for g, _ in guessed(reply["results"])] == [g for g, _ in expected]
        assert [s for _, s in guessed(reply["results"])] == pytest.approx([c for _, c in expected], abs=1e-5)

        status, reply = request(backend.origin + "/webhook",
                                {"action": "START_TRAINING", "project": {"id": 1}})
        assert (status, reply["error"]) == (400, "round 0 waits for 4 of 4 labels; Start training runs "
                                                 "it once every task is labeled")
        answer_all(run)
        assert request(backend.origin + "/webhook", {"action": "START_TRAINING"}) == (
            200, {"status": "training", "round": 0})
        assert request(backend.origin + "/predict", predict_body(run, tasks[:1]))[0] == 503
        wait_until(lambda: backend.training is None, what="round 0 to train")
        assert backend.model.version == "reviews round 1"
        next_batch = RunFolder(run).pending_batch()
        assert next_batch.round == 1
        tasks = labelstudio_tasks(next_batch, "")
        status, reply = request(backend.origin + "/predict", predict_body(run, tasks))
        assert status == 200 and reply["model_version"] == "reviews round 1"
        guesses = guessed(reply["results"])
        assert [g for g, _ in guesses] == [g for g, _ in suggestions(run)]  # round 1's batch shows these
        assert [s for _, s in guesses] == pytest.approx([c for _, c in suggestions(run)], abs=1e-5)


@pytest.mark.parametrize(("call", "status", "message"), [
    (dict(auth=None), 401, "needs Basic Auth"),
    (dict(auth=(USER, "wrong")), 401, "needs Basic Auth"),
    (dict(body={"tasks": []}), 400, 'predict: expected {"tasks": [...]'),
    (dict(body={"tasks": [{"id": 5, "data": {"text": "no prompt"}}], "label_config": "<View/>"}), 400,
     "the project's labeling config has no 'star_label' control"),
    (dict(body={"tasks": [{"id": 5, "data": {"text": "no prompt"}}]}, config=True), 400,
     "task 5 has neither the star_id of an example of this run's pool nor a 'prompt'"),
    (dict(raw=b"[" * 200_000), 400, "not JSON: nested too deeply"),
    (dict(raw=b'{"tasks": [}'), 400, "the request body is not JSON"),
    (dict(body={}, headers={"Content-Type": "text/plain"}), 415, "application/json"),
    (dict(body={}, headers={"Host": "evil.example"}), 421, "is not this server"),
    (dict(body={}, headers={"Origin": "http://evil.example"}), 403, "only from this server"),
    (dict(body={}, headers={"Origin": "null"}), 403, "only from this server"),
    (dict(body={}, headers={"Sec-Fetch-Site": "cross-site"}), 403, "only from this server"),
])
def test_bad_requests_get_one_line(run, call, status, message):
    call = dict(call)
    if call.pop("config", False):
        call["body"]["label_config"] = labeling_config(RunFolder(run).pending_batch())
    with serving(run) as backend:
        got, reply = request(backend.origin + "/predict", **call)
    assert got == status and message in reply["error"] and "\n" not in reply["error"]


def test_a_full_queue_and_a_round_in_training_answer_503(run):
    with serving(run) as backend:
        release = threading.Event()
        backend._queue(release.wait)  # the worker takes it and waits
        wait_until(lambda: backend._jobs.empty(), 10, "the worker to take the blocking job")
        for _ in range(QUEUE):
            backend._queue(lambda: None)
        tasks = labelstudio_tasks(RunFolder(run).pending_batch(), "")[:1]
        status, reply = request(backend.origin + "/predict", predict_body(run, tasks))
        assert (status, reply["error"]) == (503, f"busy: {QUEUE} requests wait for the model already; "
                                                 "try again in a moment")
        release.set()
        wait_until(lambda: backend._jobs.empty(), 10, "the queue to drain")
        backend.training = 3
        assert request(backend.origin + "/predict", predict_body(run, tasks)) == (
            503, {"error": "round 3 is training; predictions come back with its adapter"})
        backend.training = None
        assert request(backend.origin + "/predict", predict_body(run, tasks))[0] == 200


def test_serve_refuses_bad_input_in_one_line_before_loading_the_model(run, monkeypatch, capsys):
    monkeypatch.delenv("STAR_SERVE_PASSWORD", raising=False)
    assert main(["serve", str(run), "--user", "ls"]) == 2
    assert "star: error: --user ls needs its password in STAR_SERVE_PASSWORD" in capsys.readouterr().err
    link = RunFolder(run).labelstudio_path
    link.write_text(json.dumps({"url": "http://127.0.0.1:9", "project": 1}))
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "any")
    try:
        assert main(["serve", str(run), "--port", "0"]) == 2
    finally:
        link.unlink()
    err = capsys.readouterr().err
    assert err.startswith("star: error: Label Studio at http://127.0.0.1:9 does not answer")
    assert err.count("\n") == 1


def test_start_training_is_acknowledged_only_once_the_labels_are_fsynced(tmp_path, monkeypatch):
    """A webhook's reply acknowledges the event, never an answer: it leaves at once (Label
    Studio waits on it while an annotator saves), the journaling follows on the worker, and an
    annotation it misses stays in Label Studio for the next look. Start training's reply does
    acknowledge the labels: it leaves only after the project's answers are fsynced."""
    folder = RunFolder(waiting_run(tmp_path))  # round 0 waits for e0, e1, e2
    client = FakeLabelStudio([task_with(0, "e0", "1"), task_with(1, "e1", "0"), task_with(2, "e2")],
                             [task_with(0, "e0", "1"), task_with(1, "e1", "0"), task_with(2, "e2", "1")])
    trained: list[Path] = []
    monkeypatch.setattr(backend_module, "run_next_round", lambda run: trained.append(run.root) or {})
    model: Any = SimpleNamespace(version="run round 0", reload=lambda: None)
    events: list[tuple[str, Any]] = []
    record_fsyncs(monkeypatch, folder.journal.path, events)
    record_replies(monkeypatch, backend_module._Handler, events)
    backend = Backend(folder, model, LiveProject(folder, client, 1))
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        assert request(backend.origin + "/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": 1}},
                       auth=None) == (200, {"status": "journaling"})
        wait_until(lambda: ("fsync", 2) in events, 10, "the webhook's journaling")
        events.clear()
        assert request(backend.origin + "/webhook", {"action": "START_TRAINING"}, auth=None) == (
            200, {"status": "training", "round": 0})
        assert events == [("fsync", 3), ("reply", 200)]
        wait_until(lambda: backend.training is None, 10, "the round to run")
    finally:
        backend.shutdown()
    assert trained == [folder.root]


def test_label_studio_connects_star_serve_gets_predictions_and_starts_training(
        label_studio, tiny_model_dir, tmp_path, monkeypatch):
    server, run = label_studio, new_run(tmp_path / "reviews", tiny_model_dir)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    folder = RunFolder(run)
    batch = folder.pending_batch()
    live = connect(folder, server.url, None, create=True)
    live.push(batch)
    with serving(run, live=live) as backend:
        model = server.call("POST", "/api/ml", {
            "project": live.project, "url": backend.origin, "title": "STAR", "auth_method": "BASIC_AUTH",
            "basic_auth_user": USER, "basic_auth_pass": PASSWORD})
        assert (model["state"], model["model_version"]) == ("CO", "reviews round 0")  # /health, /setup
        # Label Studio made a webhook to /webhook for the backend; a team gives it the password
        [hook] = [h for h in server.call("GET", f"/api/webhooks/?project={live.project}")
                  if h["url"] == backend.origin + "/webhook"]
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        server.call("PATCH", f"/api/webhooks/{hook['id']}/", {"headers": {"Authorization": basic}})

        # A task of the team's own, with a prompt: "Retrieve predictions" asks STAR for it.
        item = batch.items[0]
        server.call("POST", f"/api/projects/{live.project}/import",
                    [{"text": item.fields["text"], "prompt": item.prompt}])
        server.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={live.project}",
                    {"selectedItems": {"all": True, "excluded": []}})
        [own] = [task for key, task in project_tasks(server, live.project).items() if key.isdigit()]
        [prediction] = server.call("GET", f"/api/tasks/{own}")["predictions"]
        assert prediction["model_version"] == "reviews round 0"
        assert prediction["result"][0]["value"]["choices"] == [item.suggestion]
        assert prediction["score"] == pytest.approx(item.confidence, abs=1e-5)

        # Annotations reach the journal through the webhook, with no polling STAR.
        tasks = project_tasks(server, live.project)
        for example_id in batch.ids:
            annotate(server, tasks[example_id], sample_label(example_id))
        wait_until(lambda: len(folder.journal.answers()) == 4, 60, "the webhook's journaling")
        assert {a.source for a in folder.journal.answers()} == {"labelstudio"}

        # "Start training": round 0 trains and round 1's batch reaches the project.
        server.call("POST", f"/api/ml/{model['id']}/train", {})
        assert server.call("GET", f"/api/ml/{model['id']}")["error_message"] is None
        wait_until(lambda: len(project_tasks(server, live.project)) == 9, 180, "round 1's tasks")
        wait_until(lambda: backend.training is None, 60, "the round to finish")
        assert backend.model.version == "reviews round 1"
        assert [r["round"] for r in json.loads((run / "results.json").read_text())["rounds"]] == [0]
