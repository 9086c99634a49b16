"""What every HTTP server STAR opens checks before it does anything: the labeling page
(`star label`) and the ML backend (`star serve`) share this one module.

Such a server listens on this machine and holds what people labeled, so the browser that
talks to it is the threat as much as the network: a web page elsewhere can make that browser
send requests here (a form post, a `fetch` without preflight, a DNS name rebound to
127.0.0.1). A secret in the URL or a password keeps strangers out; the checks here keep other
sites out, and keep a bad client from holding or crashing the server:

- `host_allowed`: the `Host` header names this server (localhost, an IP address, or the host
  it was bound to, `--host NAME`), with its port; else 421. A rebound DNS name fails this.
- `same_origin`: a state-changing request comes from a page of this server (`Origin`, when
  sent, is this server; `Sec-Fetch-Site`, when sent, is `same-origin` or `none`); else 403.
- `is_json`: a state-changing request is `Content-Type: application/json`, which browsers
  never send cross-site without a CORS preflight (that this server never grants); else 415.
- `read_json`: a body of at most `limit` bytes, refused by its Content-Length before a byte is
  read (411, 413), parsed into JSON or refused with one line (400), never a traceback.
- `security_headers`: on every reply: a CSP that runs only scripts and styles carrying the
  response's nonce (`new_nonce`) and forbids framing, no caching, no referrer (URLs carry
  secrets), no MIME sniffing.
- `GuardedHandler.timeout`: each connection's socket operations time out, so an idle or slow
  client frees its thread instead of holding it forever.

`Service`, `GuardedServer` and `GuardedHandler` put these together for `http.server`: a server
is a `Service` (bound when made, so a busy port is one line at once) whose handler's `route`
calls `guard(writes=...)` first, reads bodies with `json_body()`, replies with `send_json` or
`send_body`, and answers any `Refused` with `refuse`. Standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import socket
from abc import ABCMeta, abstractmethod
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO

from star.errors import StarError

TIMEOUT = 30.0
"""Seconds a connection may wait on a socket read or write before it is dropped."""
MAX_BODY = 1 << 20
"""Largest request body read: generous for a corrected draft, small enough to refuse floods."""
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
"""Hosts of this machine only: binding elsewhere makes a server reachable by others."""
_HOST = re.compile(r"(?P<name>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


class Refused(Exception):
    """A request turned away: its HTTP status, and one line (the message) saying why."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def host_allowed(header: str | None, names: Iterable[str], port: int) -> bool:
    """Whether a `Host` header names a server known by `names` on `port`.

    The name must be localhost, an IP address (a browser that sends one connected to it; DNS
    rebinding needs a name) or one of `names` (the host bound, `--host NAME`); the port must
    be `port` (80 when the header names none).
    """
    found = _HOST.fullmatch((header or "").strip().lower())
    if found is None or int(found["port"] or 80) != port:
        return False
    name = found["name"].strip("[]")
    if name == "localhost" or name in {known.lower().strip("[]") for known in names}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def same_origin(origin: str | None, fetch_site: str | None, host: str) -> bool:
    """Whether a request comes from a page of the server `host` names, or from no page at all
    (a script or curl sends neither header; the secret in the URL still guards it).
    `Origin: null` (a sandboxed frame, a file) is no page of this server."""
    if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
        return False
    return origin is None or origin.strip().lower() == f"http://{host.strip().lower()}"


def is_json(content_type: str | None) -> bool:
    """Whether a `Content-Type` header says JSON (`application/json`, any parameters)."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def read_json(stream: BinaryIO, length: str | None, limit: int = MAX_BODY) -> Any:
    """The JSON body of `length` (the Content-Length header) bytes from `stream`, or `Refused`.

    The length is checked before anything is read, so a flood costs nothing. Whatever the
    parser rejects (bad syntax, bad UTF-8, nesting deep enough to exhaust the recursion
    limit, a number too long) is one line with status 400.
    """
    if length is None:
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "a request body needs a Content-Length header")
    if not (length.isascii() and length.strip().isdigit()):
        raise Refused(HTTPStatus.BAD_REQUEST, f"Content-Length {length!r} is not a number")
    if int(length) > limit:
        raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                      f"a request body may hold at most {limit} bytes; this one has {int(length)}")
    raw = stream.read(int(length))
    try:
        return json.loads(raw)
    except RecursionError:
        raise Refused(HTTPStatus.BAD_REQUEST, "the request body is not JSON: nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise Refused(HTTPStatus.BAD_REQUEST,
                      f"the request body is not JSON: {str(error).splitlines()[0]}") from None


def new_nonce() -> str:
    """A fresh CSP nonce, one per response that carries inline script or style."""
    return secrets.token_urlsafe(18)


def security_headers(nonce: str | None = None) -> dict[str, str]:
    """Headers for every reply. Only inline `<script>`/`<style>` elements carrying `nonce` run
    (none without one): an injected handler attribute or element does not; the page talks
    only to its server, loads nothing else and cannot be framed (clickjacking)."""
    allowed = f"'nonce-{nonce}'" if nonce else "'none'"
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {allowed}; style-src {allowed}; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


class GuardedServer(ThreadingHTTPServer):
    """A threading HTTP server answering for one `Service`; the host it is bound to is a name
    `host_allowed` takes. It binds IPv6 addresses too; its threads never keep the process alive."""

    daemon_threads = True
    request_queue_size = 128
    """Connections the kernel queues until accepted: the default 5 resets some of 20
    annotators' answers sent at once."""

    def __init__(self, service: Service, host: str, port: int, handler: type[GuardedHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.service = service
        self.names = (host,)
        super().__init__((host, port), handler)


class Service:
    """A server STAR opens (the labeling page, the ML backend): bound to `host`:`port` when
    made, answering with `handler` from `serve_forever` until `shutdown`; `origin` is its
    `http://host:port`. `what` names it in the one line said when the port is taken."""

    def __init__(self, host: str, port: int, handler: type[GuardedHandler], what: str) -> None:
        try:
            self._httpd = GuardedServer(self, host, port, handler)
        except OSError as error:
            raise StarError(f"{what} cannot listen on {host}:{port} ({error.strerror}); if another "
                            "star command uses the port, pass --port 0 for a free one") from None
        self._started = False
        shown = f"[{host}]" if ":" in host else host
        self.origin = f"http://{shown}:{self._httpd.server_port}"

    def serve_forever(self) -> None:
        """Answer requests until `shutdown` (from another thread) or Ctrl+C."""
        self._started = True
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def shutdown(self) -> None:
        """Stop serving and free the port; safe whether or not `serve_forever` ever ran."""
        if self._started:  # HTTPServer.shutdown waits for a loop that must have started
            self._httpd.shutdown()
        self._httpd.server_close()


class GuardedHandler(BaseHTTPRequestHandler, metaclass=ABCMeta):
    """A request handler with the checks above; replies are JSON, with `security_headers`.
    Silent: the default request log would print URLs, which carry secrets."""

    server: GuardedServer
    timeout = TIMEOUT  # StreamRequestHandler sets it on the socket of each connection

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    @abstractmethod
    def route(self, method: str) -> None:
        """Answer a request of `method` (GET or POST) to `self.path`: each server its own (the
        labeling page's and the ML backend's handlers)."""

    def guard(self, *, writes: bool) -> None:
        """Raise `Refused` unless the request is for this server and, if it `writes`, comes
        from a page of this server (or none) with a JSON body."""
        host = self.headers.get("Host")
        if not host_allowed(host, self.server.names, self.server.server_port):
            raise Refused(HTTPStatus.MISDIRECTED_REQUEST,
                          f"Host {host!r} is not this server: open it by IP address or localhost, "
                          "or start it with --host set to that name")
        if writes and not same_origin(self.headers.get("Origin"), self.headers.get("Sec-Fetch-Site"),
                                      host or ""):
            raise Refused(HTTPStatus.FORBIDDEN, "a change may come only from this server's own page")
        if writes and not is_json(self.headers.get("Content-Type")):
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                          "a change must be sent as Content-Type: application/json")

    def json_body(self, limit: int = MAX_BODY) -> Any:
        return read_json(self.rfile, self.headers.get("Content-Length"), limit)

    def refuse(self, refused: Refused) -> None:
        self.send_json(refused.status, {"error": str(refused)})

    def send_json(self, status: HTTPStatus, data: Any) -> None:
        self.send_body(status, json.dumps(data, ensure_ascii=False).encode(), "application/json")

    def send_body(self, status: HTTPStatus, body: bytes, content_type: str,
                  nonce: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in security_headers(nonce).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What `http.server` itself refuses (a malformed request line or header, an unknown
        method) gets the same one-line JSON and headers as every other reply."""
        self.close_connection = True
        self.send_json(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def log_message(self, format: str, *args: Any) -> None:
        """Silent (see the class)."""
