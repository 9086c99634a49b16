"""What a hostile client or web page tries against the labeling page, and what it gets.

The probe of issue 35 as tests: bodies that crash a parser, DNS rebinding (a foreign Host),
cross-site writes (Origin, Sec-Fetch-Site, a form's Content-Type), floods, idle sockets,
path traversal, concurrent writers, a journal that is a link, and the page's CSP. Every
refusal is one line of JSON, and nothing refused reaches the journal. The probe's cases (the
issue counts 24, grouped), and where each is tested:
- here: a body nested 200 kB deep; bad UTF-8, a 5000-digit number, bad syntax, an empty body;
  no, a negative or a non-numeric Content-Length; 50 MB announced (refused before reading); a
  foreign Host (rebinding); Origin of another site, `null`, `Sec-Fetch-Site: cross-site`; a
  text/plain, form or multipart write; inline script (CSP nonce) and framing; an idle and a
  half-sent connection; 20 answers at once; traversal (plain and encoded); a journal link;
- test_labeling_page.py: a missing and a wrong token; answers of the wrong shape, outside the
  label set or of another batch; kill -9 after acknowledged answers; `<script>` and
  `<img onerror>` texts and an injected script in Chromium;
- test_journal.py: a journal that is a link (its target kept), dangling, a FIFO or a folder;
- test_serve.py: the same refusals from `star serve`, which shares `guard.py`.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from star.active.batch import Batch, BatchItem
from star.annotate import guard
from star.annotate.guard import host_allowed, same_origin
from star.annotate.server import LabelingServer, _Handler
from tests.test_labeling_page import ROUND, choice_batch, lines, running

ANSWER = json.dumps({"id": "e0", "value": "0"}).encode()


def send(server: LabelingServer, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these headers (Host defaults to the server's own; a body
    gets Content-Type JSON unless `headers` says otherwise); status, headers, body."""
    port = urlsplit(server.url).port
    given = {"Host": f"127.0.0.1:{port}", **({"Content-Type": "application/json"} if body else {}),
             **(headers or {})}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={k: v for k, v in given.items() if v is not None})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def path_of(server: LabelingServer, rest: str = "") -> str:
    return f"/{server.token}/{rest}"


def one_line_error(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert "\n" not in error and "Traceback" not in error
    return error


# ---- bodies ------------------------------------------------------------------------------------

def test_a_deeply_nested_body_is_a_400_with_one_line_not_a_traceback(tmp_path, capfd):
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal) as server:
        status, _, body = send(server, "POST", path_of(server, "api/answer"), b"[" * 200_000)
        assert status == 400 and one_line_error(body) == "the request body is not JSON: nested too deeply"
        assert send(server, "GET", path_of(server, "api/state"))[0] == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err
    assert not journal.exists()


def test_every_malformed_body_is_a_400_with_one_line(tmp_path):
    with running(choice_batch(), tmp_path / "labels.jsonl") as server:
        for body, words in [
            (b'{"id": "e0", "value": "\xff"}', "not JSON: 'utf-8' codec can't decode byte 0xff"),
            (b'{"id": "e0", "value": ' + b"9" * 5000 + b"}", "not JSON: Exceeds the limit (4300 digits)"),
            (b"{not json", "not JSON: Expecting property name"),
            (b"", "not JSON: Expecting value"),
        ]:
            status, _, reply = send(server, "POST", path_of(server, "api/answer"), body,
                                    {"Content-Type": "application/json"})
            assert status == 400 and words in one_line_error(reply), body[:40]
    assert not (tmp_path / "labels.jsonl").exists()


def test_a_body_length_is_checked_before_a_byte_is_read(tmp_path):
    """Only headers are sent: a server that tried to read the 50 MB would wait, not reply."""
    with running(choice_batch(), tmp_path / "labels.jsonl") as server:
        port = urlsplit(server.url).port
        for length, status, words in [
            (None, 411, "needs a Content-Length"),
            ("-5", 400, "Content-Length '-5' is not a number"),
            ("12abc", 400, "is not a number"),
            (str(50 << 20), 413, f"at most {guard.MAX_BODY} bytes; this one has {50 << 20}"),
        ]:
            head = (f"POST {path_of(server, 'api/answer')} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Content-Type: application/json\r\n"
                    + (f"Content-Length: {length}\r\n" if length is not None else "") + "\r\n")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(head.encode())
                reply = sock.makefile("rb").read()
            assert reply.startswith(f"HTTP/1.0 {status} ".encode()), length
            assert words in one_line_error(reply.split(b"\r\n\r\n", 1)[1])


def test_what_http_server_itself_refuses_is_one_line_of_json_too(tmp_path):
    with running(choice_batch(), tmp_path / "labels.jsonl") as server:
        port = urlsplit(server.url).port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")
            reply = sock.makefile("rb").read()
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 431 ") and b"frame-ancestors 'none'" in head
    assert one_line_error(body) == "Line too long"


# ---- Host, Origin, Content-Type ----------------------------------------------------------------

@pytest.mark.parametrize(("header", "bound", "port", "allowed"), [
    ("127.0.0.1:8765", "127.0.0.1", 8765, True),
    ("localhost:8765", "127.0.0.1", 8765, True),
    ("LocalHost:8765", "127.0.0.1", 8765, True),
    ("[::1]:8765", "127.0.0.1", 8765, True),
    ("192.168.1.20:8765", "0.0.0.0", 8765, True),  # a colleague on the network, by address
    ("labelbox:8765", "labelbox", 8765, True),  # --host labelbox
    ("localhost", "127.0.0.1", 80, True),
    ("labelbox:8765", "127.0.0.1", 8765, False),  # a name nobody bound: a rebinding
    ("evil.example:8765", "0.0.0.0", 8765, False),
    ("evil.example", "127.0.0.1", 80, False),
    ("127.0.0.1:8766", "127.0.0.1", 8765, False),
    ("localhost", "127.0.0.1", 8765, False),
    ("evil.example@127.0.0.1:8765", "127.0.0.1", 8765, False),
    ("127.0.0.1:8765/x", "127.0.0.1", 8765, False),
    ("", "127.0.0.1", 8765, False),
    (None, "127.0.0.1", 8765, False),
])
def test_which_host_headers_name_this_server(header, bound, port, allowed):
    assert host_allowed(header, [bound], port) is allowed


def test_a_server_may_be_told_more_names_it_is_reached_by():
    names = ["0.0.0.0", "host.docker.internal"]
    assert host_allowed("host.docker.internal:9090", names, 9090)
    assert not host_allowed("evil.example:9090", names, 9090)


def test_a_foreign_host_gets_nothing_and_writes_nothing(tmp_path):
    """DNS rebinding: evil.example resolves to 127.0.0.1, so the browser sends Host: evil.example."""
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal) as server:
        port = urlsplit(server.url).port
        for host in ("evil.example", f"evil.example:{port}", f"{socket.gethostname()}:{port}",
                     f"127.0.0.1:{port + 1}", ""):
            for method, rest, body in (("GET", "", None), ("GET", "api/state", None),
                                       ("POST", "api/answer", ANSWER)):
                status, _, reply = send(server, method, path_of(server, rest), body, {"Host": host})
                assert status == 421, (host, rest)
                assert "is not this server" in one_line_error(reply) and b"Review" not in reply
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert send(server, "GET", path_of(server), headers={"Host": host})[0] == 200
    assert not journal.exists()


def test_a_write_from_another_page_is_refused(tmp_path):
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal) as server:
        same = f"http://127.0.0.1:{urlsplit(server.url).port}"
        for headers in [{"Origin": "http://evil.example"}, {"Origin": "null"},
                        {"Origin": "http://127.0.0.1:1"}, {"Sec-Fetch-Site": "cross-site"},
                        {"Sec-Fetch-Site": "same-site"},  # another port here is same-site, not same-origin
                        {"Origin": same, "Sec-Fetch-Site": "cross-site"}]:
            for rest, body in (("api/answer", ANSWER), ("api/undo", b"{}")):
                status, _, reply = send(server, "POST", path_of(server, rest), body, headers)
                assert status == 403, (headers, rest)
                assert one_line_error(reply) == "a change may come only from this server's own page"
    assert not journal.exists()


def test_a_write_from_the_page_itself_or_no_page_is_taken(tmp_path):
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal) as server:
        same = f"http://127.0.0.1:{urlsplit(server.url).port}"
        for headers in ({"Origin": same, "Sec-Fetch-Site": "same-origin"}, {"Origin": same}, {}):
            assert send(server, "POST", path_of(server, "api/answer"), ANSWER, headers)[0] == 200
        # reading may come from anywhere: a link to the page, clicked in a mail or a chat
        assert send(server, "GET", path_of(server), headers={"Sec-Fetch-Site": "cross-site"})[0] == 200
    assert len(lines(journal)) == 3
    assert same_origin("HTTP://LOCALHOST:8765", "same-origin", "localhost:8765")


def test_a_write_must_say_it_is_json(tmp_path):
    """What a cross-site form or a no-preflight fetch can send is refused."""
    journal = tmp_path / "labels.jsonl"
    with running(choice_batch(), journal) as server:
        for content_type in ["text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x", "", None]:
            status, _, reply = send(server, "POST", path_of(server, "api/answer"), ANSWER,
                                    {"Content-Type": content_type})
            assert status == 415, content_type
            assert one_line_error(reply) == "a change must be sent as Content-Type: application/json"
        status, _, _ = send(server, "POST", path_of(server, "api/answer"), ANSWER,
                            {"Content-Type": "Application/JSON; charset=utf-8"})
        assert status == 200
    assert [r["id"] for r in lines(journal)] == ["e0"]


# ---- headers -----------------------------------------------------------------------------------

def test_the_page_runs_only_its_own_script_and_cannot_be_framed(tmp_path):
    with running(choice_batch(), tmp_path / "labels.jsonl") as server:
        replies = [send(server, "GET", path_of(server)) for _ in range(2)]
        _, state_headers, _ = send(server, "GET", path_of(server, "api/state"))
    nonces = []
    for status, headers, body in replies:
        csp = headers["content-security-policy"]
        assert status == 200 and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        nonce = re.search(r"script-src 'nonce-([\w-]+)'; style-src 'nonce-\1';", csp)[1]
        assert len(nonce) >= 22  # at least 128 bits
        page = body.decode()
        assert page.count(f'<script nonce="{nonce}">') == 1 and page.count(f'<style nonce="{nonce}">') == 1
        assert page.count("<script") == 1 and page.count("<style") == 1 and "{{" not in page
        assert (headers["x-frame-options"], headers["x-content-type-options"], headers["referrer-policy"],
                headers["cache-control"]) == ("DENY", "nosniff", "no-referrer", "no-store")
        nonces.append(nonce)
    assert nonces[0] != nonces[1]  # new at each response
    assert "script-src 'none'" in state_headers["content-security-policy"]
    assert "frame-ancestors 'none'" in state_headers["content-security-policy"]


# ---- connections -------------------------------------------------------------------------------

@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127"], ids=["idle", "half-a-request"])
def test_an_idle_connection_is_dropped_after_the_timeout(tmp_path, monkeypatch, sent):
    assert _Handler.timeout == guard.TIMEOUT == 30  # the page's default; shortened here
    monkeypatch.setattr(guard.GuardedHandler, "timeout", 0.5)
    with (running(choice_batch(), tmp_path / "labels.jsonl") as server,
          socket.create_connection(("127.0.0.1", urlsplit(server.url).port), timeout=5) as sock):
        sock.sendall(sent)
        assert sock.recv(1) == b""  # closed by the server, long before this socket's 5 s


def test_concurrent_answers_are_each_journaled_once(tmp_path):
    items = [BatchItem(f"e{i}", {"text": f"review {i}"}, f"Review: {i}", "1", 0.6) for i in range(20)]
    batch = Batch(ROUND, items, ["0", "1"], {"0": " negative", "1": " positive"})
    journal = tmp_path / "labels.jsonl"
    start = threading.Barrier(len(items))
    statuses: dict[str, int] = {}

    def answer(example_id: str, value: str) -> None:
        start.wait()
        body = json.dumps({"id": example_id, "value": value}).encode()
        statuses[example_id] = send(server, "POST", path_of(server, "api/answer"), body)[0]

    with running(batch, journal) as server:
        threads = [threading.Thread(target=answer, args=(item.id, str(i % 2)))
                   for i, item in enumerate(items)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert statuses == {item.id: 200 for item in items}
    written = lines(journal)
    assert sorted(r["id"] for r in written) == sorted(item.id for item in items)
    assert {r["id"]: r["value"] for r in written} == {f"e{i}": str(i % 2) for i in range(20)}


def test_no_path_reaches_a_file(tmp_path):
    with running(choice_batch(), tmp_path / "labels.jsonl") as server:
        for rest in ["../../../../etc/passwd", "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                     "..%2f..%2f..%2fetc%2fpasswd", "api/../../../../etc/passwd", "/etc/passwd",
                     "page.html", "../guard.py"]:
            status, _, body = send(server, "GET", path_of(server, rest))
            assert status == 404 and one_line_error(body) == f"no GET /{rest}"
        assert send(server, "GET", f"/../{server.token}/api/state")[0] == 403


def test_a_journal_that_is_a_link_is_refused_by_the_page_and_its_target_kept(tmp_path):
    victim = tmp_path / "thesis.tex"
    victim.write_text("\\section{Intro}\nunfinished")
    journal = tmp_path / "labels.jsonl"
    journal.symlink_to(victim)
    with running(choice_batch(), journal) as server:
        status, _, body = send(server, "POST", path_of(server, "api/answer"), ANSWER)
        assert status == 500 and one_line_error(body) == (
            f"the journal could not be written, nothing was saved: {journal}: the label journal is "
            "a symbolic link or not a regular file; star reads and appends only to the journal file "
            "itself, so that it never writes through a link into another file (put the file itself there)")
        status, _, body = send(server, "GET", path_of(server, "api/state"))
        assert status == 500 and "symbolic link" in one_line_error(body)
    assert victim.read_text() == "\\section{Intro}\nunfinished"


def test_the_reply_to_any_request_carries_no_traceback(tmp_path: Path) -> None:
    """A method http.server does not route is refused by it, in the same JSON."""
    with running(choice_batch(), tmp_path / "labels.jsonl") as server:
        status, headers, body = send(server, "DELETE", path_of(server, "api/state"))
    assert status == 501 and headers["content-type"] == "application/json"
    assert one_line_error(body) == "Unsupported method ('DELETE')"


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_the_page_binds_ipv6_loopback_and_names_it_in_brackets(tmp_path):
    with running(choice_batch(), tmp_path / "labels.jsonl", host="::1") as server:
        assert re.fullmatch(r"http://\[::1\]:[0-9]+/[\w-]{32}/", server.url)
        connection = http.client.HTTPConnection("::1", urlsplit(server.url).port, timeout=10)
        connection.request("GET", path_of(server, "api/state"))  # Host: [::1]:port
        assert connection.getresponse().status == 200
        connection.close()
