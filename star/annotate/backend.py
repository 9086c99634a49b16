"""`star serve RUN`: STAR as a Label Studio ML backend, following the protocol of
label-studio-ml-backend (`label_studio_ml/api.py`) as Label Studio 1.23 calls it:

- `GET /health` (Label Studio waits 1 s) and `POST /setup` (3 s): up, and the model version;
- `POST /predict {"tasks": [...], "label_config": ...}` -> `{"results": [...]}`, one prediction
  per task, in order: the latest adapter's answer scored by its confidence, all the request's
  tasks in one batched pass;
- `POST /webhook {"action": ...}`: START_TRAINING ("Start training" in the model settings)
  journals the project's annotations, then answers (so its reply follows their fsync) and runs
  the next round; ANNOTATION_CREATED/UPDATED/DELETED journal the project's annotations on the
  worker (Label Studio sends them to every ML backend's /webhook when it can reach it). Their
  reply, at once, acknowledges the event, not an answer: Label Studio sends webhooks while the
  annotator's save waits, and an annotation that a crash keeps out of the journal stays in
  Label Studio for the next look.

One worker thread owns the model, so requests queue for it; at most `QUEUE` wait, and the
next gets a 503 saying so, as does a prediction while a round trains. Label Studio's "Basic
Auth" setting is honoured (`--user`, the password from STAR_SERVE_PASSWORD only), and every
request passes `guard.py`'s checks first, as the labeling page's do.
"""

from __future__ import annotations

import base64
import queue
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlsplit

from star.active.runfolder import RunFolder, complete_rounds
from star.annotate.exchange import LABEL_CONTROL, labelstudio_prediction
from star.annotate.guard import LOCAL_NAMES, GuardedHandler, Refused, Service
from star.annotate.labelstudio import LiveProject, model_version, run_next_round
from star.config import load_config
from star.data.sources import load_task
from star.data.table import positions_of
from star.data.tasks import Example, split_boundary
from star.errors import StarError
from star.model.loading import load_model
from star.model.lora import attach_lora, load_adapter
from star.model.passes import drafts, predict
from star.progress import log
from star.seeding import derived_seed

QUEUE = 8
"""Requests that may wait for the model; the next one is told to come back (503)."""
WAIT = 90.0
"""Seconds a prediction waits for its turn: Label Studio gives up on /predict after 100."""
PASSWORD = "STAR_SERVE_PASSWORD"
ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                     "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED")


class Model:
    """The run's model with its newest adapter: STAR's answer to any task, with confidence."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.config = load_config(folder.config_path)
        self.task = load_task(self.config.task)
        self.loaded = load_model(self.config.model)
        # as the loop starts: round 0's batch is guessed by this adapter, which changes nothing yet
        attach_lora(self.loaded, self.config.lora, derived_seed(self.config.seed, 0, "lora_init"))
        self.version = ""
        self.reload()

    def reload(self) -> None:
        """Take the adapter of the last complete round (none before round 0 completes)."""
        results = self.folder.read_results()
        done = len(complete_rounds(results)) if results else 0
        if done:
            load_adapter(self.loaded.model, self.folder.saved_adapter(done - 1))
        self.version = model_version(self.folder, done)

    def example(self, task: Any) -> Example:
        """What the model reads for a Label Studio task: the pool's example its `star_id`
        names, else the prompt in its data (STAR's tasks carry one; a team's may add one)."""
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise StarError("predict: each task is an object with 'data'")
        if isinstance(data.get("star_id"), str):
            try:
                return self.task.train[int(positions_of(self.task.train, [data["star_id"]])[0])]
            except KeyError:
                pass
        prompt = data.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()):
            raise StarError(f"predict: task {task.get('id')} has neither the star_id of an example of "
                            "this run's pool nor a 'prompt' in its data")
        return Example(f"task {task.get('id')}", split_boundary(prompt, "")[0], None, None)

    def answers(self, examples: list[Example]) -> list[tuple[str, float]]:
        """Each example's answer (a label, or a draft text) and its confidence, in batches."""
        sizes = {"batch_size": self.config.uncertainty.batch_size,
                 "max_length": self.config.model.max_length}
        if self.task.generative:
            return drafts(self.loaded, self.task, examples, **sizes)
        return [(p.prediction, p.confidence) for p in predict(self.loaded, self.task, examples, **sizes)]


def _target(label_config: Any) -> str:
    """The object star's control labels (its `toName`) in a project's labeling config."""
    try:
        view = ET.fromstring(label_config) if isinstance(label_config, str) else None
    except ET.ParseError:
        view = None
    control = None if view is None else next(
        (e for e in view.iter() if e.get("name") == LABEL_CONTROL and e.get("toName")), None)
    if control is None:
        raise StarError(f"predict: the project's labeling config has no '{LABEL_CONTROL}' control; make "
                        "the project with star labelstudio --create (or star batch's .xml)")
    return control.get("toName", "")


@dataclass
class _Job:
    work: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Backend(Service):
    """The server's state: the model, its worker and queue, the linked project if any."""

    def __init__(self, folder: RunFolder, model: Model, live: LiveProject | None,
                 host: str = "127.0.0.1", port: int = 0, user: str | None = None,
                 password: str | None = None) -> None:
        self.folder = folder
        self.model = model
        self.live = live
        self._credentials = (base64.b64encode(f"{user}:{password}".encode()).decode()
                             if user is not None else None)
        self.training: int | None = None
        """The round being trained, while one is."""
        self._jobs: queue.Queue[_Job] = queue.Queue(QUEUE)
        self._syncing = threading.Lock()  # one webhook sync waiting at a time is enough
        threading.Thread(target=self._work, daemon=True).start()
        if host not in LOCAL_NAMES and user is None:
            log(f"warning: star serve listens on {host} without a password: anyone who reaches it "
                f"can read predictions and start training; pass --user and set {PASSWORD}")
        super().__init__(host, port, _Handler, "star serve")

    # -- the worker ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job.result = job.work()
            except BaseException as error:  # handed to the request that waits, or said
                job.error = error
            job.done.set()

    def _queue(self, work: Callable[[], Any]) -> _Job:
        job = _Job(work)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, f"busy: {QUEUE} requests wait for the "
                          "model already; try again in a moment") from None
        return job

    # -- the protocol -------------------------------------------------------------------------
    def authorize(self, header: str | None) -> None:
        if self._credentials is None:
            return
        scheme, _, given = (header or "").partition(" ")
        if not (scheme.lower() == "basic" and secrets.compare_digest(given.strip().encode(),
                                                                     self._credentials.encode())):
            raise Refused(HTTPStatus.UNAUTHORIZED, "this ML backend needs Basic Auth: set its user and "
                          "password in Label Studio's model settings")

    def health(self, _body: Any) -> dict[str, Any]:
        return {"status": "UP", "model_version": self.model.version}

    def setup(self, _body: Any) -> dict[str, Any]:
        return {"model_version": self.model.version}

    def predict(self, body: Any) -> dict[str, Any]:
        tasks = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(tasks, list) or not tasks:
            raise StarError('predict: expected {"tasks": [...], "label_config": "..."} with tasks')
        to_name = _target(body.get("label_config"))
        examples = [self.model.example(task) for task in tasks]
        if self.training is not None:
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, f"round {self.training} is training; "
                          "predictions come back with its adapter")
        start = time.monotonic()
        job = self._queue(lambda: (self.model.version, self.model.answers(examples)))
        if not job.done.wait(WAIT):
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "busy: the model did not get to these tasks "
                          f"in {WAIT:.0f} s; try again later")
        if job.error is not None:
            raise job.error
        version, answers = job.result
        log(f"predicted {len(tasks)} tasks with {version} in {time.monotonic() - start:.1f} s")
        return {"results": [labelstudio_prediction(self.model.task.generative, to_name, answer,
                                                   confidence, version)
                            for answer, confidence in answers],
                "model_version": version}

    def webhook(self, body: Any) -> dict[str, Any]:
        action = body.get("action") if isinstance(body, dict) else None
        if action == "START_TRAINING":
            return self.start_training()
        if action in ANNOTATION_EVENTS and self.live is not None:
            project = (body.get("project") or {}).get("id") if isinstance(body.get("project"), dict) else None
            if project in (None, self.live.project) and self._syncing.acquire(blocking=False):
                try:
                    self._queue(self._sync)
                except Refused:
                    self._syncing.release()
                    raise
                return {"status": "journaling"}
        return {"status": "ignored", "action": action}

    def _sync(self) -> None:
        self._syncing.release()  # from here on, a new event needs a new look
        batch = self.folder.pending_batch()
        if batch is not None and self.live is not None:
            try:
                lines = self.live.sync(batch)
            except StarError as error:
                log(f"annotations not journaled: {error}")
                return
            if lines:
                log(f"round {batch.round}: journaled {len(lines)} answers from Label Studio")

    def start_training(self) -> dict[str, Any]:
        """Check (journaling the project's annotations first) that the waiting batch is
        complete, then run its round on the worker; Label Studio hears back at once."""
        if self.training is not None:
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, f"round {self.training} is training already")
        batch = self.folder.pending_batch()
        if batch is None:
            raise StarError("no batch waits for labels: the run's budget is spent (or its next "
                            "batch is being picked)")
        if self.live is not None:
            self.live.sync(batch)
        answered = self.folder.journal.latest()
        missing = sum(i not in answered for i in batch.ids)
        if missing:
            raise StarError(f"round {batch.round} waits for {missing} of {len(batch.ids)} labels; "
                            "Start training runs it once every task is labeled")
        self.training = batch.round
        try:
            self._queue(self._train)
        except Refused:
            self.training = None
            raise
        log(f"round {batch.round}: training (Start training)")
        return {"status": "training", "round": batch.round}

    def _train(self) -> None:
        try:
            results = run_next_round(self.folder)
            self.model.reload()
            batch = self.folder.pending_batch()
            if self.live is not None and batch is not None and results.get("waiting"):
                self.live.push(batch)
            log(f"round {self.training} trained; now serving {self.model.version}")
        except Exception as error:  # said on the terminal: Label Studio heard back long ago
            log(f"round {self.training} did not train: {error}")
        finally:
            self.training = None


ROUTES: dict[tuple[str, str], Callable[[Backend, Any], dict[str, Any]]] = {
    ("GET", "/"): Backend.health, ("GET", "/health"): Backend.health, ("POST", "/setup"): Backend.setup,
    ("POST", "/predict"): Backend.predict, ("POST", "/webhook"): Backend.webhook}


class _Handler(GuardedHandler):
    def route(self, method: str) -> None:
        backend = cast(Backend, self.server.service)
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            self.guard(writes=method == "POST")
            backend.authorize(self.headers.get("Authorization"))
            route = ROUTES.get((method, path))
            if route is None:
                raise Refused(HTTPStatus.NOT_FOUND, f"no {method} {path}: this is a Label Studio ML "
                              "backend (/health, /setup, /predict, /webhook)")
            reply = route(backend, self.json_body() if method == "POST" else None)
        except Refused as refused:
            self.refuse(refused)
            return
        except StarError as error:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        except Exception as error:  # e.g. a full disk: one line, never a traceback and a cut reply
            log(f"{method} {path} failed: {type(error).__name__}: {error}")
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(error).__name__}: {error}"})
            return
        self.send_json(HTTPStatus.OK, reply)
