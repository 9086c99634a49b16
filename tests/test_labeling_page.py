"""The labeling page: its API (token, checks, journal lines), kill -9 safety, and a real browser.

The browser tests drive Debian's headless Chromium with Playwright; without either they skip,
unless STAR_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from star.active.batch import Batch, BatchItem, save_batch
from star.active.journal import Answer, Journal, now
from star.annotate.server import LabelingServer, _Handler
from star.errors import StarError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROUND = 3
DONE_HINT = "star next runs/demo"


REVIEWS = ["A warm, funny film with a cast that clearly enjoys itself.",
           "Two hours I will never get back; the plot collapses halfway.",
           "Not bad, not great: the ending almost saves it.",
           "The soundtrack is lovely, the dialogue painfully flat.",
           "One of the best thrillers of the decade, tense from start to finish.",
           "I laughed once, at the wrong moment.",
           "Beautifully shot, but the story never goes anywhere.",
           "A small gem: honest, kind and sharply written."]


def choice_batch(n: int = 6) -> Batch:
    """Movie reviews; the model's suggestions alternate positive / negative."""
    items = [BatchItem(f"e{i}", {"title": f"Review #{i + 1}", "text": REVIEWS[i]},
                       f"Review: {REVIEWS[i]}\nSentiment:", "1" if i % 2 == 0 else "0",
                       confidence=0.55 + 0.05 * i, uncertainty=0.4)
             for i in range(n)]
    return Batch(ROUND, items, ["0", "1"], {"0": " negative", "1": " positive"})


def generative_batch() -> Batch:
    items = [BatchItem(f"q{i}", {"question": f"What is {i} + {i}?"}, f"Q: {i} + {i}\nA:",
                       f"The sum is {2 * i}", confidence=0.4) for i in range(1, 3)]
    return Batch(ROUND, items)


@contextmanager
def running(batch: Batch, journal: Path, **options: Any) -> Iterator[LabelingServer]:
    server = LabelingServer(batch, Journal(journal), "alice", **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)


def call(url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """GET, or POST JSON; the status and the decoded JSON reply (or the page's size)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            is_json = response.headers["Content-Type"].startswith("application/json")
            return response.status, json.loads(text) if is_json else len(text)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def lines(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []


# ---- API ---------------------------------------------------------------------------------------

def test_every_request_needs_the_token(tmp_path):
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal) as server:
        base = server.url.removesuffix(f"{server.token}/")
        assert call(server.url)[0] == 200
        assert call(server.url.rstrip("/"))[0] == 200  # redirected to the page, token kept
        for url in (base, base + "api/state", base + "wrong/api/state", base + "x" + server.token + "/"):
            assert call(url)[0] == 403
        status, reply = call(base + "nope/api/answer", {"id": "e0", "value": "0"})
        assert status == 403 and "token" in reply["error"]
        assert call(server.url + "api/nothing")[0] == 404
    with running(choice_batch(), journal) as again:
        assert again.token != server.token
    assert not journal.exists()


def test_invalid_answers_are_refused_and_nothing_is_written(tmp_path):
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal) as server:
        answer = server.url + "api/answer"
        for body, words in [({"id": "e0", "value": "maybe"}, "not one of: 0 (negative), 1 (positive)"),
                            ({"id": "e99", "value": "0"}, "not in the batch of round 3"),
                            ({"id": "e0", "value": "  "}, "empty label"),
                            ({"id": "e0", "value": 1}, "two strings"),
                            (["e0", "0"], "two strings")]:
            status, reply = call(answer, body)
            assert status == 400 and words in reply["error"], (body, reply)
        status, reply = call(answer, raw=b"{not json")
        assert status == 400 and "not JSON" in reply["error"]
        status, reply = call(server.url + "api/undo", {})
        assert status == 400 and "nothing to undo" in reply["error"]
        assert call(server.url + "api/state")[1]["answered"] == {}
    assert not journal.exists()


def test_answers_and_undo_append_one_line_each(tmp_path):
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal, done_hint=DONE_HINT) as server:
        state = call(server.url + "api/state")[1]
        assert state["round"] == ROUND and not state["generative"] and state["done_hint"] == DONE_HINT
        assert state["labels"] == [{"value": "0", "display": "negative"},
                                   {"value": "1", "display": "positive"}]
        assert state["items"][1] == {"id": "e1", "fields": choice_batch().items[1].fields,
                                     "prompt": f"Review: {REVIEWS[1]}\nSentiment:", "suggestion": "0",
                                     "confidence": pytest.approx(0.6)}
        answer = server.url + "api/answer"
        assert call(answer, {"id": "e0", "value": "positive"})[1]["stored"] == "1"  # display words
        assert call(answer, {"id": "e1", "value": "0"})[1]["stored"] == "0"
        assert len(lines(journal)) == 2  # acknowledged means on disk
        status, reply = call(answer, {"id": "e0", "value": "0"})
        assert status == 200 and reply["state"]["answered"] == {"e0": "0", "e1": "0"}
        assert [r["id"] for r in reply["state"]["recent"]] == ["e0", "e1"]
        status, reply = call(server.url + "api/undo", {})
        assert (status, reply["undone"]) == (200, "e0")
        assert reply["state"]["answered"] == {"e1": "0"}
        assert reply["state"]["recent"][0]["id"] == "e0" and reply["state"]["recent"][0]["value"] is None
        assert call(server.url + "api/undo", {})[1]["undone"] == "e1"
        assert call(server.url + "api/undo", {})[0] == 400  # e0's first answer was overridden, not undoable
    assert [(r["id"], r["value"]) for r in lines(journal)] == [
        ("e0", "1"), ("e1", "0"), ("e0", "0"), ("e0", None), ("e1", None)]
    assert {(r["annotator"], r["round"], r["source"]) for r in lines(journal)} == {("alice", ROUND, "page")}
    assert all(r["time"] for r in lines(journal))


def test_a_journal_that_cannot_be_written_is_reported_not_acknowledged(tmp_path):
    with running(choice_batch(), tmp_path / "missing" / "labels.jsonl") as server:
        status, reply = call(server.url + "api/answer", {"id": "e0", "value": "0"})
    assert status == 500 and "nothing was saved" in reply["error"]


def test_undo_leaves_other_annotators_answers_alone(tmp_path):
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal) as alice:
        call(alice.url + "api/answer", {"id": "e0", "value": "0"})
    Journal(journal).append([Answer("e0", "1", "bob", ROUND, source="page", time=now())])
    with running(choice_batch(), journal) as alice:  # bob's answer is in force: alice has none
        assert call(alice.url + "api/undo", {})[0] == 400
    assert Journal(journal).latest()["e0"].annotator == "bob"


def test_a_journal_the_page_cannot_read_is_a_json_error_not_a_dropped_connection(tmp_path):
    journal = tmp_path / "labels.jsonl"
    journal.write_text('{"id": "e0", "valu\n')
    with running(choice_batch(), journal) as server:
        status, reply = call(server.url + "api/state")
        assert status == 500 and f"{journal}:1: not a journal line" in reply["error"]
        status, reply = call(server.url + "api/answer", {"id": "e1", "value": "0"})
        assert status == 500 and reply["error"].startswith("saved, but the page cannot show the batch")
    saved = json.loads(journal.read_text().splitlines()[-1])  # the damaged line stays above it
    assert (saved["id"], saved["value"], saved["annotator"]) == ("e1", "0", "alice")


def test_the_page_port_in_use_is_one_line(tmp_path):
    with running(choice_batch(), tmp_path / "labels.jsonl") as server:
        port = int(server.url.split(":")[2].split("/")[0])
        with pytest.raises(StarError, match=f"cannot listen on 127.0.0.1:{port} .*--port 0"):
            LabelingServer(choice_batch(), Journal(tmp_path / "labels.jsonl"), "bob", port=port)


def test_a_host_beyond_this_machine_warns(tmp_path, capsys):
    journal = Journal(tmp_path / "labels.jsonl")
    LabelingServer(choice_batch(), journal, "alice").shutdown()
    assert capsys.readouterr().err == ""
    server = LabelingServer(choice_batch(), journal, "alice", host="0.0.0.0")
    server.shutdown()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "0.0.0.0" in err
    assert server.url.startswith("http://0.0.0.0:")


def record_fsyncs(monkeypatch: Any, journal: Path, events: list[tuple[str, Any]]) -> None:
    """From now on, each fsync of `journal` appends ("fsync", the lines it holds) to `events`."""
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        real_fsync(descriptor)
        if journal.exists() and os.path.samestat(os.fstat(descriptor), os.stat(journal)):
            events.append(("fsync", len(lines(journal))))  # lines on disk as it was synced

    monkeypatch.setattr(os, "fsync", fsync)


def record_replies(monkeypatch: Any, handler: type[BaseHTTPRequestHandler],
                   events: list[tuple[str, Any]]) -> None:
    """From now on, each reply of a `handler` server appends ("reply", its status) to `events`."""
    def send_response(self: Any, code: int, message: str | None = None) -> None:
        events.append(("reply", int(code)))
        BaseHTTPRequestHandler.send_response(self, code, message)

    monkeypatch.setattr(handler, "send_response", send_response)


def test_each_answer_is_fsynced_before_it_is_acknowledged(tmp_path, monkeypatch):
    """The order of the journal's fsyncs and the replies, recorded: each reply comes after the
    fsync of a journal that already holds its line."""
    journal = tmp_path / "labels.jsonl"
    events: list[tuple[str, Any]] = []
    record_fsyncs(monkeypatch, journal, events)
    record_replies(monkeypatch, _Handler, events)
    with running(choice_batch(), journal) as server:
        for example_id in ("e0", "e1"):
            assert call(server.url + "api/answer", {"id": example_id, "value": "1"})[0] == 200
        assert call(server.url + "api/undo", {})[0] == 200
    assert events == [("fsync", 1), ("reply", 200), ("fsync", 2), ("reply", 200),
                      ("fsync", 3), ("reply", 200)]


def test_a_blind_page_is_never_sent_the_models_guess(tmp_path):
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal, blind=True) as server:
        state = call(server.url + "api/state")[1]
        assert state["blind"] is True
        assert [(i["suggestion"], i["confidence"]) for i in state["items"]] == [(None, None)] * 6
        assert call(server.url + "api/answer", {"id": "e0", "value": "0"})[1]["stored"] == "0"
    with running(choice_batch(), journal) as server:
        state = call(server.url + "api/state")[1]
        assert state["blind"] is False and state["items"][0]["confidence"] == pytest.approx(0.55)


# ---- kill -9 -----------------------------------------------------------------------------------

SERVE = """
import sys
from pathlib import Path
from star.active.batch import load_batch
from star.active.journal import Journal
from star.annotate.server import LabelingServer, serve
serve(LabelingServer(load_batch(Path(sys.argv[1])), Journal(Path(sys.argv[2])), "alice"))
"""


def start_process(batch: Path, journal: Path) -> tuple[subprocess.Popen[str], str]:
    """The server in its own process, through `serve`, which prints the URL when it listens."""
    return start([sys.executable, "-c", SERVE, str(batch), str(journal)])


def start(command: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`command` in its own process, once it printed the page's URL; and that URL."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    found = re.search(r"http://\S+/", line)
    if not found:
        process.kill()
        pytest.fail(f"no URL from the server: {line!r} {process.communicate()[1]}")
    return process, found.group(0)


def test_acknowledged_answers_survive_kill_9(tmp_path):
    batch, journal = tmp_path / "batch.json", tmp_path / "labels.jsonl"
    save_batch(choice_batch(8), batch)
    process, url = start_process(batch, journal)
    try:
        sent = {f"e{i}": str(i % 2) for i in range(5)}
        for example_id, value in sent.items():
            status, reply = call(url + "api/answer", {"id": example_id, "value": value})
            assert status == 200 and reply["stored"] == value
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert {r["id"]: r["value"] for r in lines(journal)} == sent
    process, new_url = start_process(batch, journal)
    try:
        assert new_url != url
        status, state = call(new_url + "api/state")
        assert status == 200 and state["answered"] == sent
    finally:
        process.terminate()
        process.communicate(timeout=10)


# ---- star label and star batch ----------------------------------------------------------------

def waiting_run(root: Path, blind: bool = False) -> Path:
    """A run folder as `star run` leaves it with people labeling: its config, and round 0's batch."""
    run = root / ("blind-run" if blind else "run")
    (run / "rounds" / "0").mkdir(parents=True)
    (run / "config.yaml").write_text("loop:\n  annotator: people\n"
                                     + ("  blind_labeling: true\n" if blind else ""))
    save_batch(replace(choice_batch(3), round=0), run / "rounds" / "0" / "batch.json")
    return run


def stop(process: subprocess.Popen[str]) -> str:
    """Ctrl+C, as a user stops `star label`; its stderr."""
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    return err


def test_star_label_on_port_0_takes_a_free_port_and_names_the_login(tmp_path):
    """Also blind, as the run's config says (loop.blind_labeling)."""
    command = [sys.executable, "-m", "star", "label", str(waiting_run(tmp_path, blind=True)), "--port", "0"]
    process, url = start(command, env={**os.environ, "LOGNAME": "zoe"})
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+/[\w-]{32}/", url)
        assert urlsplit(url).port not in (0, 8765)
        state = call(url + "api/state")[1]
        assert (state["annotator"], state["round"], state["blind"]) == ("zoe", 0, True)
        assert state["items"][0]["suggestion"] is None
    finally:
        err = stop(process)
    assert err == ""


def test_star_label_beyond_this_machine_warns_and_blind_hides_the_guess(tmp_path):
    command = [sys.executable, "-m", "star", "label", str(waiting_run(tmp_path)), "--port", "0",
               "--host", "0.0.0.0", "--annotator", "bob", "--blind"]
    process, url = start(command)
    try:
        assert url.startswith("http://0.0.0.0:")
        state = call(url.replace("0.0.0.0", "127.0.0.1") + "api/state")[1]
        assert (state["annotator"], state["blind"], state["items"][1]["confidence"]) == ("bob", True, None)
    finally:
        err = stop(process)
    assert err == ("warning: the labeling page listens on 0.0.0.0, beyond this machine: anyone who "
                   "can reach it and has its link can label\n")


def test_a_blind_batch_for_label_studio_or_a_table_leaves_the_guess_out(tmp_path, capsys):
    from star.tools.cli import main

    run, blind_run = waiting_run(tmp_path), waiting_run(tmp_path, blind=True)
    assert main(["batch", str(run), "--out", str(tmp_path / "seen.json")]) == 0
    assert main(["batch", str(run), "--out", str(tmp_path / "blind.json"), "--blind"]) == 0
    assert main(["batch", str(blind_run), "--out", str(tmp_path / "config.json")]) == 0
    seen, *blind = (json.loads((tmp_path / name).read_text()) for name in ("seen.json", "blind.json",
                                                                            "config.json"))
    assert [t["predictions"][0]["result"][0]["value"] for t in seen] == [{"choices": [s]} for s in "101"]
    assert [t["predictions"][0]["score"] for t in seen] == pytest.approx([0.55, 0.6, 0.65])
    for tasks in blind:
        assert tasks == [{"data": task["data"]} for task in seen]  # the same tasks, no prediction
    for folder, args in ((run, ["--blind"]), (blind_run, [])):
        out = tmp_path / f"{folder.name}.csv"
        assert main(["batch", str(folder), "--format", "csv", "--out", str(out), *args]) == 0
        assert out.read_text().splitlines()[0] == "\ufeffid,title,text,uncertainty,label"
    assert capsys.readouterr().err == ""


# ---- a real browser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium under Playwright; skipped without them, unless CI requires them."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        reason = f"playwright cannot be imported ({error}): pip install playwright"
    if reason is None and not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium"
    if reason is not None:
        if os.environ.get("STAR_REQUIRE_BROWSER") == "1":
            pytest.fail(f"STAR_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def open_page(browser: Any, url: str) -> Iterator[Any]:
    """A fresh page on `url` that must fetch nothing but our server and log no error."""
    page = browser.new_page()
    origin = url.split("/", 3)[:3]
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    try:
        yield page
    finally:
        page.close()
    assert all(request.split("/", 3)[:3] == origin for request in requests), requests
    assert not errors, errors


def test_labeling_a_choice_batch_with_the_keyboard(browser, tmp_path):
    from playwright.sync_api import expect

    batch, journal = choice_batch(6), tmp_path / "labels.jsonl"

    def at(page: Any, example_id: str, answered: int) -> None:
        expect(page.locator("#example")).to_have_attribute("data-id", example_id)
        expect(page.locator("#progress")).to_have_text(f"{answered} of 6 labeled")

    with running(batch, journal, done_hint=DONE_HINT) as server, open_page(browser, server.url) as page:
        expect(page.locator("#round")).to_have_text(f"Round {ROUND}")
        at(page, "e0", 0)
        expect(page.locator(".choice.suggested")).to_contain_text("positive")
        page.keyboard.press("1")  # pick negative over the suggestion
        expect(page.locator(".choice.picked")).to_contain_text("negative")
        page.keyboard.press("Enter")
        at(page, "e1", 1)
        page.keyboard.press("Enter")  # accept the suggestion (negative)
        at(page, "e2", 2)
        page.keyboard.press("s")  # skip e2 for now: nothing written
        at(page, "e3", 2)
        assert len(lines(journal)) == 2
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        at(page, "e4", 3)
        page.keyboard.press("z")  # undo e3
        at(page, "e3", 2)
        expect(page.locator("#status")).to_have_text("open")
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        at(page, "e4", 3)
        page.keyboard.press("Enter")
        at(page, "e5", 4)
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        at(page, "e2", 5)  # back to the skipped one
        page.locator("#recent button", has_text="e0").click()  # change e0 from the list
        at(page, "e0", 5)
        expect(page.locator(".choice.picked")).to_contain_text("negative")  # its answer, preselected
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        at(page, "e2", 5)
        page.keyboard.press("ArrowLeft")  # change e1 by going back
        at(page, "e1", 5)
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        at(page, "e2", 5)
        page.keyboard.press("Enter")
        expect(page.locator("#done .big")).to_have_text(f"All 6 labels are in: run {DONE_HINT} to continue.")
        expect(page.locator("#progress")).to_have_text("6 of 6 labeled")

    written = lines(journal)
    assert [(r["id"], r["value"]) for r in written] == [
        ("e0", "0"), ("e1", "0"), ("e3", "1"), ("e3", None), ("e3", "0"), ("e4", "1"), ("e5", "1"),
        ("e0", "1"), ("e1", "1"), ("e2", "1")]
    assert {(r["annotator"], r["round"], r["source"]) for r in written} == {("alice", ROUND, "page")}
    final = {"e0": "1", "e1": "1", "e2": "1", "e3": "0", "e4": "1", "e5": "1"}
    assert {i: a.value for i, a in Journal(journal).latest().items()} == final

    with running(batch, journal) as again, open_page(browser, again.url) as page:
        assert again.token != server.token
        expect(page.locator("#progress")).to_have_text("6 of 6 labeled")
        expect(page.locator("#done .big")).to_have_text("All 6 labels are in.")  # no hint given
        for item in batch.items:
            page.keyboard.press("ArrowRight")
            expect(page.locator("#example")).to_have_attribute("data-id", item.id)
            words = batch.display[final[item.id]].strip()
            expect(page.locator("#status")).to_have_text(f"✓ answered: {words}")
    assert len(lines(journal)) == len(written)


def test_a_held_enter_writes_once_and_focus_shows_others_answers(browser, tmp_path):
    from playwright.sync_api import expect

    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(3), journal) as server, open_page(browser, server.url) as page:
        expect(page.locator("#example")).to_have_attribute("data-id", "e0")
        page.keyboard.down("Enter")  # accepts e0's suggestion
        expect(page.locator("#example")).to_have_attribute("data-id", "e1")
        page.keyboard.down("Enter")  # the key still held: a repeat, which must not accept e1 unseen
        page.keyboard.up("Enter")
        page.wait_for_timeout(300)
        expect(page.locator("#example")).to_have_attribute("data-id", "e1")
        assert [(r["id"], r["value"]) for r in lines(journal)] == [("e0", "1")]
        expect(page.locator("#progress")).to_have_text("1 of 3 labeled")
        Journal(journal).append([Answer("e2", "1", "bob", ROUND, source="import", time=now())])
        page.evaluate("window.dispatchEvent(new Event('focus'))")  # the annotator comes back
        expect(page.locator("#progress")).to_have_text("2 of 3 labeled")


def test_post_editing_a_generative_draft(browser, tmp_path):
    from playwright.sync_api import expect

    journal = tmp_path / "labels.jsonl"
    with running(generative_batch(), journal) as server, open_page(browser, server.url) as page:
        draft = page.locator("#draft")
        expect(draft).to_have_value("The sum is 2")
        expect(draft).to_be_focused()
        expect(page.locator("#choices")).to_be_hidden()
        page.keyboard.press("Enter")  # a new line in the text, not a submit
        page.keyboard.type("Checked twice: so 1 + 1 is 2.")  # s, z, digits are text here
        expect(page.locator("#example")).to_have_attribute("data-id", "q1")
        assert not journal.exists()
        page.keyboard.press("Control+Enter")
        expect(page.locator("#example")).to_have_attribute("data-id", "q2")
        expect(draft).to_have_value("The sum is 4")
        expect(page.locator("#progress")).to_have_text("1 of 2 labeled")
        page.keyboard.press("Escape")
        page.keyboard.press("z")  # undo q1: its corrected text comes back, not the model's draft
        expect(page.locator("#example")).to_have_attribute("data-id", "q1")
        expect(draft).to_have_value("The sum is 2\nChecked twice: so 1 + 1 is 2.")
    assert [(r["id"], r["value"], r["source"]) for r in lines(journal)] == [
        ("q1", "The sum is 2\nChecked twice: so 1 + 1 is 2.", "page"), ("q1", None, "page")]


def nine_label_batch() -> Batch:
    """Nine labels, so every digit key picks one; the model suggests `two` at 73 %."""
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    items = [BatchItem(f"e{i}", {"title": f"Ticket {i}", "body": f"Printer {i} jams."}, f"Ticket: {i}",
                       "L2", confidence=0.73) for i in range(9)]
    return Batch(ROUND, items, [f"L{n}" for n in range(1, 10)],
                 {f"L{n}": f" {word}" for n, word in enumerate(words, 1)})


def test_every_documented_key_and_button(browser, tmp_path):
    from playwright.sync_api import expect

    journal = tmp_path / "labels.jsonl"

    def at(page: Any, example_id: str, answered: int) -> None:
        expect(page.locator("#example")).to_have_attribute("data-id", example_id)
        expect(page.locator("#progress")).to_have_text(f"{answered} of 9 labeled")

    with running(nine_label_batch(), journal) as server, open_page(browser, server.url) as page:
        at(page, "e0", 0)
        expect(page.locator("#fields .name")).to_have_text(["title", "body"])
        expect(page.locator("#fields .value")).to_have_text(["Ticket 0", "Printer 0 jams."])
        expect(page.locator("#suggestion")).to_have_text("Model suggests two, 73% confident.")
        expect(page.locator(".choice.suggested")).to_have_count(1)
        expect(page.locator(".choice.picked")).to_contain_text("two")
        expect(page.locator("#keys dt")).to_have_text(["1 – 9", "Enter", "S", "Z / ⌫", "← →"])
        for index, key in enumerate("3456789"):  # e0..e6 answered with labels 3..9
            page.keyboard.press(key)
            expect(page.locator(".choice.picked")).to_contain_text(nine_label_batch().display[f"L{key}"].strip())
            page.keyboard.press("Enter")
            at(page, f"e{index + 1}", index + 1)
        page.locator("#skip").click()
        at(page, "e8", 7)
        page.keyboard.press("S")  # upper case: skips too, back to the only other open one
        at(page, "e7", 7)
        page.locator(".choice", has_text="one").click()
        page.locator("#submit").click()
        at(page, "e8", 8)
        page.locator("#undo").click()  # e7 comes back with its answer picked
        at(page, "e7", 7)
        expect(page.locator(".choice.picked")).to_contain_text("one")
        page.keyboard.press("Z")  # upper case: undoes e6
        at(page, "e6", 6)
        expect(page.locator(".choice.picked")).to_contain_text("nine")
        page.keyboard.press("Backspace")  # undoes e5
        at(page, "e5", 5)
        page.locator("#next").click()
        at(page, "e6", 5)
        page.locator("#prev").click()
        page.locator("#prev").click()
        at(page, "e4", 5)
        expect(page.locator("#status")).to_have_text("✓ answered: seven")
    assert [(r["id"], r["value"]) for r in lines(journal)] == [
        *[(f"e{i}", f"L{i + 3}") for i in range(7)], ("e7", "L1"), ("e7", None), ("e6", None), ("e5", None)]


def test_texts_are_shown_literally_never_run(browser, tmp_path):
    from playwright.sync_api import expect

    script, image = "<script>window.pwned = 1</script>", '<img src=x onerror="window.pwned = 2">'
    items = [BatchItem("x0", {"text": script, "note": image}, script, "1", 0.9),
             BatchItem("x1", {"text": "</div><b>bold</b>"}, "", "0", 0.9)]
    batch = Batch(ROUND, items, ["0", "1"], {"0": " <i>no</i>", "1": " <u>yes</u>"})
    with running(batch, tmp_path / "labels.jsonl") as server, open_page(browser, server.url) as page:
        expect(page.locator("#fields .value")).to_have_text([script, image])
        expect(page.locator(".choice")).to_contain_text(["<i>no</i>", "<u>yes</u>"])
        page.keyboard.press("Enter")
        expect(page.locator("#example")).to_have_attribute("data-id", "x1")
        expect(page.locator("#fields .value")).to_have_text("</div><b>bold</b>")
        expect(page.locator("#recent .value")).to_have_text("<u>yes</u>")
        page.wait_for_timeout(200)
        assert page.evaluate("window.pwned") is None
        assert page.locator("#fields b, #fields img, .choice i, #recent u").count() == 0


def test_the_csp_stops_a_script_injected_into_the_page(browser, tmp_path):
    """Were a text ever rendered as HTML, its inline handler or script would still not run:
    only the page's own script, with this response's nonce, may."""
    with running(choice_batch(), tmp_path / "labels.jsonl") as server:
        page = browser.new_page()
        try:
            page.goto(server.url)
            page.wait_for_selector("#example:not([hidden])")
            page.evaluate("""() => {
                const box = document.createElement("div");
                box.innerHTML = '<img src="data:," onerror="window.pwned = 1">';
                const script = document.createElement("script");
                script.textContent = "window.pwned = 2";
                document.body.append(box, script);
            }""")
            page.wait_for_timeout(300)
            assert page.evaluate("window.pwned") is None
        finally:
            page.close()


def test_a_blind_page_shows_no_guess_and_waits_for_a_pick(browser, tmp_path):
    from playwright.sync_api import expect

    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(3), journal, blind=True) as server, open_page(browser, server.url) as page:
        expect(page.locator("#example")).to_have_attribute("data-id", "e0")
        expect(page.locator("#who")).to_have_text("as alice · blind: no model suggestion")
        expect(page.locator("#suggestion")).to_be_hidden()
        expect(page.locator(".choice")).to_have_count(2)
        expect(page.locator(".choice.suggested, .choice.picked, .choice .tag")).to_have_count(0)
        expect(page.locator("#keys dd").nth(1)).to_have_text("submit the pick")
        page.keyboard.press("Enter")  # nothing picked: nothing sent
        expect(page.locator("#message")).to_have_text("Pick a label first: press its number or click it.")
        expect(page.locator("#example")).to_have_attribute("data-id", "e0")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        expect(page.locator("#example")).to_have_attribute("data-id", "e1")
        expect(page.locator(".choice.picked")).to_have_count(0)
    assert [(r["id"], r["value"]) for r in lines(journal)] == [("e0", "1")]


def test_a_blind_draft_starts_empty(browser, tmp_path):
    from playwright.sync_api import expect

    journal = tmp_path / "labels.jsonl"
    with running(generative_batch(), journal, blind=True) as server, open_page(browser, server.url) as page:
        expect(page.locator("#draft")).to_have_value("")
        expect(page.locator("#suggestion")).to_be_hidden()
        page.keyboard.type("Two.")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#example")).to_have_attribute("data-id", "q2")
    assert [(r["id"], r["value"]) for r in lines(journal)] == [("q1", "Two.")]
