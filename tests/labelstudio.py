"""A real Label Studio server for the tests that talk to one, shared by the whole session.

Label Studio lives in its own venv (.venv-ls, made by .ci/labelstudio.sh) so its pins never
touch ours. Without it the tests that need it skip, unless STAR_REQUIRE_LABEL_STUDIO=1 (CI)
makes that a failure. The server starts once per session (about a minute on 2 cores: the first
start migrates a new SQLite database) and can be restarted on the same port and data, as a
crash test needs. conftest.py makes `label_studio` a fixture of every test file.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_exchange import ADMIN

LABEL_STUDIO = Path(__file__).resolve().parents[1] / ".venv-ls" / "bin" / "label-studio"
STARTUP_SECONDS = 300


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


class Server:
    """One Label Studio process on loopback, its admin's legacy token, and REST calls."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.token = secrets.token_hex(20)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = {**os.environ,
                    # the first user and its legacy token (`Authorization: Token ...`, never expires),
                    # made at start without prompting; legacy tokens are off by default since 1.17
                    "LABEL_STUDIO_USERNAME": ADMIN, "LABEL_STUDIO_PASSWORD": secrets.token_hex(12),
                    "LABEL_STUDIO_USER_TOKEN": self.token, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                    "LABEL_STUDIO_HOST": "",  # a HOST set for something else must not become its URL
                    # `star serve` listens on loopback: let Label Studio call it and its webhook
                    "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",
                    # nothing leaves the machine and nothing lands in the real home folder
                    "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false",
                    "LATEST_VERSION_CHECK": "false", "XDG_DATA_HOME": str(home / "xdg-data"),
                    "XDG_CONFIG_HOME": str(home / "xdg-config"), "XDG_CACHE_HOME": str(home / "xdg-cache")}
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_seconds = 0.0

    def start(self) -> None:
        started = time.monotonic()
        log_path = self.home / "server.log"
        with log_path.open("a") as log:
            self.process = subprocess.Popen(
                [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1",
                 "--port", self.url.rsplit(":", 1)[1], "--data-dir", str(self.home / "data")],
                env=self.env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while not _answering(self.url):
            if self.process.poll() is not None or time.monotonic() - started > STARTUP_SECONDS:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                pytest.fail(f"Label Studio did not answer on {self.url} (exit code "
                            f"{self.process.poll()}):\n{tail}")
            time.sleep(1)
        self.ready_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and any children
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port and data, as after a crash or an upgrade."""
        self.stop()
        self.start()

    def sign_up(self, email: str) -> str:
        """A new user who signs up as a person does (the form, a session), and their own API
        token: their annotations are then made with it, not filed by the admin."""
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        browser.open(self.url + "/user/signup/", timeout=60).read()
        csrf = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
        form = {"email": email, "password": secrets.token_hex(12), "csrfmiddlewaretoken": csrf}
        browser.open(self.url + "/user/signup/", urllib.parse.urlencode(form).encode(), timeout=60).read()
        with browser.open(self.url + "/api/current-user/token", timeout=60) as response:
            return json.loads(response.read())["token"]

    def download(self, method: str, path: str, body: Any = None, token: str | None = None) -> bytes:
        """One REST call with a legacy token (`Authorization: Token ...`, the admin's by
        default); the raw answer."""
        request = urllib.request.Request(
            self.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {token or self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read()[:500]!r}") from None

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        raw = self.download(method, path, body, token)
        return json.loads(raw) if raw else None


class FakeLabelStudio:
    """Label Studio as `LiveProject` sees it (the `Client` calls), for tests of what STAR does
    with its answers that need no server: each listing of the tasks is the next of `listings`
    (the last one again once they run out), so annotations can appear between two looks."""

    url = "http://label-studio.test"

    def __init__(self, *listings: list[dict[str, Any]]) -> None:
        self.listings = list(listings)
        self.imported: list[dict[str, Any]] = []

    def tasks(self, project: int) -> list[dict[str, Any]]:
        return self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> None:
        self.imported += tasks

    def users(self) -> dict[int, str]:
        return {7: "carol@star.test"}


def task_with(number: int, star_id: str, *labels: str) -> dict[str, Any]:
    """A task of STAR's as Label Studio lists it, annotated by user 7 with each of `labels`
    (annotation ids 100·number + k, a second apart)."""
    return {"id": number, "data": {"star_id": star_id}, "annotations": [
        {"id": 100 * number + k, "completed_by": 7, "was_cancelled": False, "ground_truth": False,
         "updated_at": f"2025-06-01T10:00:0{k}.123456Z",
         "result": [{"from_name": "star_label", "to_name": "text", "type": "choices",
                     "value": {"choices": [label]}}]}
        for k, label in enumerate(labels)]}


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory, pytestconfig) -> Iterator[Server]:
    if not LABEL_STUDIO.exists():
        reason = f"Label Studio is not installed at {LABEL_STUDIO} (run .ci/labelstudio.sh)"
        if os.environ.get("STAR_REQUIRE_LABEL_STUDIO") == "1":
            pytest.fail(reason + " and STAR_REQUIRE_LABEL_STUDIO=1")
        pytest.skip(reason)
    server = Server(tmp_path_factory.mktemp("labelstudio"))
    started = time.monotonic()
    try:
        server.start()
        first_start = server.ready_seconds
        yield server
    finally:
        server.stop()
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\nLabel Studio: server up in {first_start:.0f} s, {time.monotonic() - started:.0f} s in all")
