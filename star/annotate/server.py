"""The built-in labeling page: a small local web server between a round's batch and the journal.

Standard library only, so labeling needs nothing beyond the install. Every answer is checked
against the batch and appended to the journal (flushed and fsynced) before the page hears that
it was accepted: whatever an annotator saw accepted survives a crash. A random token in the
URL, new at each start, keeps other users of the machine out; `guard` keeps other web pages
out (Host, Origin and Content-Type checks, a nonce CSP) and bounds what a request may cost.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from http import HTTPStatus
from importlib.resources import files
from typing import Any, cast
from urllib.parse import urlsplit

from star.active.batch import Batch
from star.active.journal import Answer, Journal, now
from star.annotate.guard import LOCAL_NAMES, GuardedHandler, Refused, Service, new_nonce
from star.errors import DataError, StarError

RECENT = 10
"""How many of the last answers the page lists (each one a way back to change it)."""
NONCE = b"{{csp_nonce}}"
"""Where page.html takes each response's CSP nonce: only its own script and style run."""


class LabelingServer(Service):
    """Serves the page and its JSON API for one batch; writes go to `journal` as `annotator`.

    `url` holds the token; `done_hint` is the command that continues the run, shown once every
    example of the batch is answered. `closed` is entered around every write and yields why
    the batch takes no answers now, or None while it does, and then keeps it so until the
    write is done: a page can stay open while a round trains on its answers and after, and must
    then refuse to change them (the run could no longer replay what it trained on).
    `blind` keeps the model's suggestion and confidence off the page (they are not even sent
    to it): on the uncertain examples a round picks, a pre-selected guess invites agreement.
    """

    def __init__(self, batch: Batch, journal: Journal, annotator: str, host: str = "127.0.0.1",
                 port: int = 0, done_hint: str | None = None,
                 closed: Callable[[], AbstractContextManager[str | None]] = nullcontext,
                 blind: bool = False) -> None:
        self.batch = batch
        self.journal = journal
        self.annotator = annotator
        self.done_hint = done_hint
        self.closed = closed
        self.blind = blind
        self.token = secrets.token_urlsafe(24)
        self._page = files(__package__).joinpath("page.html").read_bytes()
        self._write_lock = threading.Lock()  # undo reads the journal, then appends
        if host not in LOCAL_NAMES:
            print(f"warning: the labeling page listens on {host}, beyond this machine: anyone who can "
                  "reach it and has its link can label", file=sys.stderr, flush=True)
        super().__init__(host, port, _Handler, "the labeling page")
        self.url = f"{self.origin}/{self.token}/"

    def state(self) -> dict[str, Any]:
        """Everything the page shows: the batch, the answers in force, the last answers."""
        batch = self.batch
        ids = set(batch.ids)
        answered: dict[str, str] = {}
        last: dict[str, Answer] = {}  # per id its newest line (retractions too), oldest first
        for answer in self.journal.answers():
            if answer.id not in ids:
                continue
            last.pop(answer.id, None)
            last[answer.id] = answer
            if answer.value is None:
                answered.pop(answer.id, None)
            else:
                answered[answer.id] = answer.value
        recent = list(reversed(last.values()))[:RECENT]
        return {
            "round": batch.round,
            "annotator": self.annotator,
            "generative": batch.generative,
            "labels": [{"value": label, "display": batch.display.get(label, label).strip() or label}
                       for label in batch.labels],
            "blind": self.blind,
            "items": [{"id": item.id, "fields": item.fields, "prompt": item.prompt,
                       "suggestion": None if self.blind else item.suggestion,
                       "confidence": None if self.blind else item.confidence}
                      for item in batch.items],
            "answered": answered,
            "recent": [{"id": a.id, "value": a.value, "annotator": a.annotator, "time": a.time}
                       for a in recent],
            "done_hint": self.done_hint,
        }

    def answer(self, example_id: str, value: str) -> str:
        """Check one answer and append it; returns the stored value once it is on disk."""
        stored = self.batch.check(example_id, value, "page")
        with self._open():
            self.journal.append([Answer(example_id, stored, self.annotator, self.batch.round,
                                        source="page", time=now())])
        return stored

    def undo(self) -> str:
        """Retract this annotator's most recent answer still in force; returns its id."""
        ids = set(self.batch.ids)
        with self._open():
            lines = self.journal.answers()
            newest = {answer.id: index for index, answer in enumerate(lines)}
            for index in reversed(range(len(lines))):
                line = lines[index]
                if (line.annotator == self.annotator and line.value is not None and line.id in ids
                        and newest[line.id] == index):
                    self.journal.append([Answer(line.id, None, self.annotator, self.batch.round,
                                                source="page", time=now())])
                    return line.id
        raise DataError("page: nothing to undo: none of your answers in this batch is in force")

    @contextmanager
    def _open(self) -> Iterator[None]:
        """Held around a write: one at a time (undo reads the journal, then appends), and only
        while the batch takes answers."""
        with self._write_lock, self.closed() as reason:
            if reason:
                raise DataError(f"page: {reason}")
            yield


class _Handler(GuardedHandler):
    """Routes `/<token>/...` once `guard` passed; without the right token, 403 and nothing learned."""

    def route(self, method: str) -> None:
        app = cast(LabelingServer, self.server.service)
        try:
            self.guard(writes=method == "POST")
        except Refused as refused:
            self.refuse(refused)
            return
        parts = urlsplit(self.path).path.split("/")
        if len(parts) < 2 or not secrets.compare_digest(parts[1].encode(), app.token.encode()):
            self.send_json(HTTPStatus.FORBIDDEN, {"error": "wrong or missing token: open the link the "
                                                           "labeling server printed when it started"})
            return
        rest = "/".join(parts[2:])
        if len(parts) == 2:  # without the slash the page's relative API paths would miss the token
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", f"/{app.token}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif (method, rest) == ("GET", ""):
            nonce = new_nonce()
            self.send_body(HTTPStatus.OK, app._page.replace(NONCE, nonce.encode()),
                           "text/html; charset=utf-8", nonce)
        elif (method, rest) == ("GET", "api/state"):
            try:
                self.send_json(HTTPStatus.OK, app.state())
            except (StarError, OSError) as error:  # e.g. a journal line edited by hand
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(error)})
        elif (method, rest) == ("POST", "api/answer"):
            self._write(lambda body: {"stored": app.answer(*_answer_fields(body))})
        elif (method, rest) == ("POST", "api/undo"):
            self._write(lambda body: {"undone": app.undo()})
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no {method} /{rest}"})

    def _write(self, action: Callable[[Any], dict[str, Any]]) -> None:
        """Run a write; the reply, with the new state, leaves only after the journal is on disk."""
        try:
            result = action(self.json_body())
        except Refused as refused:
            self.refuse(refused)
            return
        except DataError as error:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        except (StarError, OSError) as error:  # a full disk, a journal that is not a plain file
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                           {"error": f"the journal could not be written, nothing was saved: {error}"})
            return
        try:
            state = cast(LabelingServer, self.server.service).state()
        except (StarError, OSError) as error:
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                           {"error": f"saved, but the page cannot show the batch: {error}"})
            return
        self.send_json(HTTPStatus.OK, {**result, "state": state})


def _answer_fields(body: Any) -> tuple[str, str]:
    if not (isinstance(body, dict) and isinstance(body.get("id"), str)
            and isinstance(body.get("value"), str)):
        raise DataError('page: an answer is {"id": "...", "value": "..."} with two strings')
    return body["id"], body["value"]


def serve(server: LabelingServer) -> None:
    """Run the labeling page until Ctrl+C, after printing its URL."""
    print(f"Label round {server.batch.round} at {server.url}  (answers are saved as you go; "
          "Ctrl+C stops)", flush=True)
    with suppress(KeyboardInterrupt):
        server.serve_forever()
