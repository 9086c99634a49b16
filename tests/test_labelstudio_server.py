"""The Label Studio round trip against a real server: project, tasks, annotations, exports.

The server is the session's (tests/labelstudio.py: skipped without .venv-ls unless
STAR_REQUIRE_LABEL_STUDIO=1). STAR_RECORD_LABELSTUDIO=1 also writes the exports to
tests/data/labelstudio, the files test_exchange.py reads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from star.active.batch import Batch
from star.annotate.exchange import labeling_config, labelstudio_tasks, read_labels
from tests.labelstudio import Server
from tests.test_exchange import ADMIN, BOB, RECORDED, checked, choice_batch, generative_batch


@pytest.fixture
def server(label_studio: Server) -> Server:
    """The session's Label Studio server (tests/labelstudio.py)."""
    return label_studio


def _project(server: Server, batch: Batch, title: str) -> tuple[int, dict[str, int]]:
    """A project with star's config and tasks; returns its id and the task id per star id."""
    project = server.call("POST", "/api/projects", {"title": title, "label_config": labeling_config(batch)})
    imported = server.call("POST", f"/api/projects/{project['id']}/import",
                           labelstudio_tasks(batch, f"test/round-{batch.round}"))
    assert (imported["task_count"], imported["prediction_count"]) == (len(batch.items), len(batch.items))
    listed = server.call("GET", f"/api/tasks?project={project['id']}&page_size=100")["tasks"]
    return project["id"], {task["data"]["star_id"]: task["id"] for task in listed}


def _answer(batch: Batch, value: str) -> list[dict[str, Any]]:
    kind, key = ("textarea", "text") if batch.generative else ("choices", "choices")
    to_name = labelstudio_tasks(batch, "")[0]["predictions"][0]["result"][0]["to_name"]
    return [{"from_name": "star_label", "to_name": to_name, "type": kind, "value": {key: [value]}}]


def _submit(server: Server, task: int, result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"result": result, "lead_time": 3.0, **extra}
    return server.call("POST", f"/api/tasks/{task}/annotations/", body)


def _skip(server: Server, task: int) -> None:
    """What the Skip button sends: a cancelled annotation with no result."""
    server.call("POST", f"/api/tasks/{task}/annotations/?was_cancelled=1",
                {"result": [], "was_cancelled": True, "lead_time": 1.0})


def _exports(server: Server, project: int, stem: str, tmp_path: Path) -> dict[str, Path]:
    """The three quick exports (GET /export): annotators appear as user ids."""
    files = {}
    for kind, name in (("JSON", f"{stem}.json"), ("JSON_MIN", f"{stem}-min.json"), ("CSV", f"{stem}.csv")):
        files[kind] = _keep(server.download("GET", f"/api/projects/{project}/export?exportType={kind}"),
                            tmp_path / name)
    return files


def _keep(raw: bytes, path: Path) -> Path:
    path.write_bytes(raw)
    if os.environ.get("STAR_RECORD_LABELSTUDIO") == "1":
        (RECORDED / path.name).write_bytes(raw)
    return path


def test_choice_round_trip(server, tmp_path):
    batch = choice_batch()
    project, tasks = _project(server, batch, "star choice")
    assert server.call("GET", f"/api/tasks/{tasks['r2']}")["predictions"][0]["score"] == 0.55
    admin = str(server.call("GET", "/api/current-user/whoami")["id"])
    # Bob has no password to sign in with: the admin files his annotation under his name.
    bob = server.call("POST", "/api/users/", {"email": BOB, "username": "bob"})["id"]

    _submit(server, tasks["r1"], _answer(batch, "1"))
    first = _submit(server, tasks["r2"], _answer(batch, "1"))
    server.call("PATCH", f"/api/annotations/{first['id']}/", {"result": _answer(batch, "0")})  # changed mind
    _skip(server, tasks["r3"])
    _submit(server, tasks["r4"], _answer(batch, "0"))
    _submit(server, tasks["r4"], _answer(batch, "1"), completed_by=bob)  # the newer one wins

    expected = {"r1": ("1", admin), "r2": ("0", admin), "r4": ("1", str(bob))}
    for kind, path in _exports(server, project, "choice", tmp_path).items():
        assert checked(read_labels(path), batch) == expected, kind

    # A snapshot export with annotators expanded names them by email.
    snapshot = server.call("POST", f"/api/projects/{project}/exports/",
                           {"serialization_options": {"annotations__completed_by": {"only_id": False}}})
    for _ in range(60):
        if server.call("GET", f"/api/projects/{project}/exports/{snapshot['id']}")["status"] == "completed":
            break
        time.sleep(1)
    raw = server.download("GET", f"/api/projects/{project}/exports/{snapshot['id']}/download?exportType=JSON")
    labels = read_labels(_keep(raw, tmp_path / "choice-emails.json"))
    assert checked(labels, batch) == {"r1": ("1", ADMIN), "r2": ("0", ADMIN), "r4": ("1", BOB)}


def test_generative_round_trip(server, tmp_path):
    batch = generative_batch()
    project, tasks = _project(server, batch, "star generative")
    admin = str(server.call("GET", "/api/current-user/whoami")["id"])
    _submit(server, tasks["g1"], _answer(batch, " Paris."))  # the draft, accepted as it was
    _submit(server, tasks["g2"], _answer(batch, "2 is prime.\nSo are 3 and 5."))
    _skip(server, tasks["g3"])

    expected = {"g1": (" Paris.", admin), "g2": ("2 is prime.\nSo are 3 and 5.", admin)}
    for kind, path in _exports(server, project, "generative", tmp_path).items():
        assert checked(read_labels(path), batch) == expected, kind
