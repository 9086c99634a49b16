"""The Label Studio round trip against a real server: project, tasks, annotations, exports.

Label Studio lives in its own venv (.venv-ls, made by .ci/labelstudio.sh) so its pins never
touch ours. Without it the test skips, unless STAR_REQUIRE_LABEL_STUDIO=1 (CI) makes that a
failure. STAR_RECORD_LABELSTUDIO=1 also writes the exports to tests/data/labelstudio, the
files test_exchange.py reads.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from star.active.batch import Batch
from star.annotate.exchange import labeling_config, labelstudio_tasks, read_labels
from tests.test_exchange import ADMIN, BOB, RECORDED, checked, choice_batch, generative_batch

LABEL_STUDIO = Path(__file__).resolve().parents[1] / ".venv-ls" / "bin" / "label-studio"
STARTUP_SECONDS = 300  # first start migrates a new SQLite database: about a minute on 2 cores


@dataclass
class Server:
    url: str
    token: str

    def download(self, method: str, path: str, body: Any = None) -> bytes:
        """One REST call with the legacy token (`Authorization: Token ...`); the raw answer."""
        request = urllib.request.Request(
            self.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read()[:500]!r}") from None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return json.loads(self.download(method, path, body))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory, pytestconfig) -> Iterator[Server]:
    if not LABEL_STUDIO.exists():
        reason = f"Label Studio is not installed at {LABEL_STUDIO} (run .ci/labelstudio.sh)"
        if os.environ.get("STAR_REQUIRE_LABEL_STUDIO") == "1":
            pytest.fail(reason + " and STAR_REQUIRE_LABEL_STUDIO=1")
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("labelstudio")
    token, port = secrets.token_hex(20), _free_port()
    env = {**os.environ,
           # the first user and its legacy token (`Authorization: Token ...`, never expires),
           # made at start without prompting; legacy tokens are off by default since 1.17
           "LABEL_STUDIO_USERNAME": ADMIN, "LABEL_STUDIO_PASSWORD": secrets.token_hex(12),
           "LABEL_STUDIO_USER_TOKEN": token, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_HOST": "",  # a HOST set for something else must not become its URL
           # nothing leaves the machine and nothing lands in the real home folder
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false",
           "LATEST_VERSION_CHECK": "false", "XDG_DATA_HOME": str(home / "xdg-data"),
           "XDG_CONFIG_HOME": str(home / "xdg-config"), "XDG_CACHE_HOME": str(home / "xdg-cache")}
    log_path = home / "server.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(home / "data")],
            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while not _answering(url):
            if process.poll() is not None or time.monotonic() - started > STARTUP_SECONDS:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                pytest.fail(f"Label Studio did not answer on {url} (exit code {process.poll()}):\n{tail}")
            time.sleep(1)
        ready = time.monotonic() - started
        yield Server(url, token)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the server and any children
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        total = time.monotonic() - started
        print(f"\nLabel Studio round trip: server up in {ready:.0f} s, {total:.0f} s in all")


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
