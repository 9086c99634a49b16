"""A run labeled live in Label Studio: its batches pushed as tasks, every annotation journaled
the moment it is seen, and the next round run once a batch is complete.

Label Studio keeps the annotations, the run folder everything else, and each step can be cut
by a crash (kill -9 of STAR, a restart of Label Studio) and done again without doing it twice:
- a task is pushed only while no task of the project carries its `star_id`, checked under the
  run folder's lock, so two STAR processes (`star labelstudio`, `star serve`) never push one
  twice;
- an annotation is journaled with its key `<project>/<annotation id>` (`Answer.ref`) and
  journaled again only when its answer changed (ANNOTATION_UPDATED); once it is deleted or
  skipped, the newest annotation left for its task takes force again, or none does;
- the round itself is the loop's own, which resumes and replays exactly.
The API key comes from LABEL_STUDIO_API_KEY only: a command line can be read by every user of
the machine, and a file of the run travels with it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from star.active.batch import Batch
from star.active.journal import Answer, in_force_of, now
from star.active.runfolder import RunFolder, complete_rounds
from star.annotate.exchange import (
    annotation_time,
    counted_annotations,
    labeling_config,
    labelstudio_tasks,
    result_value,
)
from star.config import StarConfig, load_config
from star.errors import ConfigError, DataError, StarError
from star.files import write_json
from star.progress import interactive

API_KEY = "LABEL_STUDIO_API_KEY"
SOURCE = "labelstudio"
TIMEOUT = 30.0
"""Seconds one call to Label Studio may take before it counts as not answering."""
T = TypeVar("T")


class Unreachable(StarError):
    """Label Studio did not answer (down, restarting): a watcher waits for it, a start stops."""


class Busy(StarError):
    """Another STAR process works in the run (`star next`, `star import`, `star serve`)."""


class Client:
    """The few calls STAR makes to Label Studio, through its SDK, as plain JSON; every failure
    becomes one line naming the server and what was asked."""

    def __init__(self, url: str) -> None:
        key = os.environ.get(API_KEY, "").strip()
        if not key:
            raise ConfigError(f"set {API_KEY} to your Label Studio access token (Account & Settings); "
                              "STAR reads it from the environment only, never from a command line or file")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--url {url!r} is not an http:// or https:// address of Label Studio")
        try:
            from label_studio_sdk import LabelStudio
        except ImportError:
            raise ConfigError("Label Studio needs its SDK: pip install 'star-al[labelstudio]'") from None
        self.url = url.rstrip("/")
        self._sdk = LabelStudio(base_url=self.url, api_key=key, timeout=TIMEOUT, max_retries=0)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            return call()
        except httpx.TransportError as error:
            raise Unreachable(f"Label Studio at {self.url} does not answer {what} "
                              f"({error or type(error).__name__})") from None
        except ApiError as error:
            status, detail = error.status_code or 0, _detail(error.body)
            if status in (401, 403):
                raise ConfigError(f"Label Studio at {self.url} refused the key in {API_KEY} {what} "
                                  f"({status}: {detail})") from None
            if status in (502, 503, 504):
                raise Unreachable(f"Label Studio at {self.url} is not ready {what} ({status})") from None
            if status < 400:  # an answer that is not Label Studio's JSON: another server
                raise ConfigError(f"{self.url} does not answer as Label Studio does {what} ({status}: "
                                  f"{detail}); is --url the address of Label Studio?") from None
            raise DataError(f"Label Studio at {self.url} refused {what} ({status}: {detail})") from None

    def whoami(self) -> dict[str, Any]:
        return self._call("to a check of the key", lambda: self._sdk.users.whoami().model_dump(mode="json"))

    def project(self, project: int) -> dict[str, Any]:
        return self._call(f"reading project {project}",
                          lambda: self._sdk.projects.get(id=project).model_dump(mode="json"))

    def create_project(self, title: str, label_config: str) -> int:
        created = self._call("creating a project",
                             lambda: self._sdk.projects.create(title=title, label_config=label_config))
        return int(created.id)

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of `project` with its data and annotations (all users', as an admin)."""
        return self._call(f"listing the tasks of project {project}", lambda: [
            task.model_dump(mode="json") for task in self._sdk.tasks.list(project=project, page_size=100)])

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> None:
        self._call(f"importing {len(tasks)} tasks into project {project}",
                   lambda: self._sdk.projects.import_tasks(id=project, request=tasks))

    def users(self) -> dict[int, str]:
        """Each user's id -> how the journal names them: their email, else their username."""
        listed = self._call("listing users", lambda: self._sdk.users.list())
        return {int(user.id): user.email or user.username or f"user {user.id}" for user in listed}


def _detail(body: Any) -> str:
    """The gist of an error body: Label Studio's `detail` (and which fields it refused), else
    its first 200 characters."""
    if isinstance(body, dict) and body.get("detail"):
        fields = body.get("validation_errors")
        return str(body["detail"]) + (f" {json.dumps(fields, ensure_ascii=False)}" if fields else "")
    return " ".join(str(body).split())[:200]


@dataclass(frozen=True)
class Link:
    """The Label Studio project a run labels in, kept in the run folder (`labelstudio.json`)
    so that a rerun, or `star serve`, finds the same project and never creates a second."""

    url: str
    project: int


def read_link(folder: RunFolder) -> Link | None:
    path = folder.labelstudio_path
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Link(str(data["url"]), int(data["project"]))
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path}: not a link to a Label Studio project ({{\"url\", \"project\"}}); "
                        "restore it, or delete it to link the run again") from None


def model_version(folder: RunFolder, round_index: int) -> str:
    """How Label Studio names the predictions that round `round_index`'s batch carries: the
    run and the round (`star batch` and `star serve` name theirs alike)."""
    return f"{folder.root.name} round {round_index}"


def _same_config(first: str, second: str) -> bool:
    """Whether two labeling configs are the same XML, whatever the whitespace between tags."""
    try:
        return ET.canonicalize(first, strip_text=True) == ET.canonicalize(second, strip_text=True)
    except ET.ParseError:
        return False


class LiveProject:
    """One run's batches in one Label Studio project."""

    def __init__(self, folder: RunFolder, client: Client, project: int) -> None:
        self.folder = folder
        self.client = client
        self.project = project
        self.config: StarConfig = load_config(folder.config_path)
        self._users: dict[int, str] = {}

    def push(self, batch: Batch) -> int:
        """Push the tasks of `batch` that the project does not hold yet, the most uncertain
        first (Label Studio hands tasks out in that order); returns how many were pushed."""
        tasks = labelstudio_tasks(batch, model_version(self.folder, batch.round),
                                  blind=self.config.loop.blind_labeling)
        tasks.sort(key=lambda task: -(task["data"]["star_uncertainty"] or 0.0))
        with self._locked():  # another STAR process may be pushing the same batch
            held = {task["data"].get("star_id") for task in self.client.tasks(self.project)}
            missing = [task for task in tasks if task["data"]["star_id"] not in held]
            if missing:
                self.client.import_tasks(self.project, missing)
        return len(missing)

    def check(self, batch: Batch) -> None:
        """Refuse (DataError) what `sync` would refuse in the project's annotations of `batch`
        (a label outside the task's set), without writing anything."""
        self._changes(batch, self.client.tasks(self.project), self.folder.journal.answers())

    def sync(self, batch: Batch) -> list[Answer]:
        """Journal what changed in the project's annotations of `batch` since the journal last
        heard of them; returns the lines written. The whole change is checked before a line
        is written: a label outside the task's set stops it (DataError), the journal untouched."""
        tasks = self.client.tasks(self.project)
        authors = {a["completed_by"] for task in tasks for a in task.get("annotations") or []}
        if not authors - {None} <= self._users.keys():
            self._users = self.client.users()
        if not self._changes(batch, tasks, self.folder.journal.answers()):
            return []  # the common case: nothing new, and the run folder was not even locked
        with self._locked():
            pending = self.folder.pending_batch()
            if pending is None or pending.round != batch.round:
                return []  # another STAR process trained on the round meanwhile
            lines = self._changes(batch, tasks, self.folder.journal.answers())
            self.folder.journal.append(lines)
        return lines

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The run folder, held by this process for a moment; Busy if another holds it."""
        with ExitStack() as stack:
            try:
                stack.enter_context(self.folder.lock())
            except ConfigError as error:  # entering is all that can raise it here
                raise Busy(str(error)) from None
            yield

    def _changes(self, batch: Batch, tasks: list[dict[str, Any]], journal: list[Answer]) -> list[Answer]:
        """The journal lines that bring the answers of `batch` in line with `tasks`."""
        by_id = {task["data"].get("star_id"): task for task in tasks}
        last = {line.ref: line for line in journal if line.ref}
        in_force = in_force_of(journal)
        mine = f"{self.project}/"
        changes: list[Answer] = []
        for item in batch.items:
            task = by_id.get(item.id)
            if task is None:
                continue
            where = f"Label Studio project {self.project}, task {task['id']}"
            live = [self._answer(batch, task, a, where) for a in counted_annotations(task, where)]
            for answer in live:
                if answer.ref not in last or last[answer.ref].value != answer.value:
                    changes.append(answer)
                    last[answer.ref] = in_force[item.id] = answer
            current = in_force.get(item.id)
            if (current and current.ref and current.ref.startswith(mine)
                    and current.ref not in {answer.ref for answer in live}):
                # its annotation was deleted or skipped since: the newest one left takes force
                again = live[-1] if live else Answer(item.id, None, current.annotator, batch.round,
                                                     SOURCE, now(), current.ref)
                changes.append(again)
                in_force[item.id] = again
        return changes

    def _answer(self, batch: Batch, task: dict[str, Any], annotation: dict[str, Any], where: str) -> Answer:
        where = f"{where}, annotation {annotation['id']}"
        value = batch.check(task["data"]["star_id"], result_value(annotation.get("result") or [], where),
                            where)
        author = annotation.get("completed_by")
        moment = annotation_time(annotation, where)
        return Answer(task["data"]["star_id"], value, self._users.get(author, f"user {author}"),
                      batch.round, SOURCE,
                      moment.astimezone(timezone.utc).isoformat(timespec="seconds") if moment else now(),
                      ref=f"{self.project}/{annotation['id']}")


def connect(folder: RunFolder, url: str, project: int | None, create: bool) -> LiveProject:
    """The run's project, checked (the key, the project's labeling config, the labels of the
    annotations it holds for the waiting batch) before anything is written to the run folder:
    created with `create` unless the run already links one, else `project`, else the linked
    one. The link is written last; nothing before it takes the run folder's lock."""
    config = load_config(folder.config_path)
    if config.loop.annotator != "people":
        raise ConfigError(f"run '{folder.root}' is labeled by the {config.loop.annotator} annotator; "
                          "start a run for people (star run ... --annotator people) to label in Label Studio")
    batch = latest_batch(folder)
    client = Client(url)
    client.whoami()
    link = read_link(folder)
    if link and (link.url != client.url or (project is not None and project != link.project)):
        raise ConfigError(f"run '{folder.root}' labels in project {link.project} at {link.url}; pass "
                          f"--url {link.url} --project {link.project} (or delete "
                          f"{folder.labelstudio_path} to link another project)")
    expected = labeling_config(batch)
    if link is None and create:
        project = client.create_project(f"STAR {folder.root.name}", expected)
    else:
        project = link.project if link else project
        if project is None:
            raise ConfigError("pass --project ID (an existing project made from this run's "
                              "labeling config) or --create")
        found = client.project(project).get("label_config") or ""
        if not _same_config(found, expected):
            raise ConfigError(f"project {project} at {client.url} has another labeling config than "
                              f"this run's (see star batch {folder.root} --format labelstudio); "
                              "pass --create for a project made for it")
    live = LiveProject(folder, client, project)
    pending = folder.pending_batch()
    if pending is not None:
        live.check(pending)
    if link is None:
        write_json(folder.labelstudio_path, {"url": client.url, "project": project})
    return live


def linked(folder: RunFolder) -> LiveProject | None:
    """The project the run is linked to, checked as `connect` checks it, when the run has a
    link and LABEL_STUDIO_API_KEY is set; else None."""
    link = read_link(folder)
    if link is None or not os.environ.get(API_KEY, "").strip():
        return None
    return connect(folder, link.url, link.project, create=False)


def latest_batch(folder: RunFolder) -> Batch:
    """The batch waiting for labels, else the last one written (for its labeling config)."""
    results = folder.read_results()
    rounds = len(complete_rounds(results)) if results else 0
    for k in range(rounds, -1, -1):
        batch = folder.read_batch(k)
        if batch is not None:
            return batch
    raise DataError(f"'{folder.root}' has no batch yet; start it with star run ... --annotator people")


def run_next_round(folder: RunFolder) -> dict[str, Any]:
    """Train on the complete batch and pick the next one, as `star next` does."""
    from star.active.loop import run_experiment  # torch and the model: loaded only now

    return run_experiment(load_config(folder.config_path), folder.root)


def budget_spent(folder: RunFolder, config: StarConfig) -> bool:
    results = folder.read_results()
    labeled = sum(len(r["selected_ids"]) for r in complete_rounds(results)) if results else 0
    return labeled >= config.loop.budget


def summary(folder: RunFolder) -> str:
    results = folder.read_results() or {}
    done = complete_rounds(results) if results else []
    if not done:
        return f"{folder.root}: no round complete yet"
    last = done[-1]
    shown = (f", accuracy {100 * last['accuracy']:.2f} %" if last.get("accuracy") is not None else "")
    return (f"{folder.root}: {len(done)} rounds, {last['n_labeled']} labels{shown}; "
            f"star status {folder.root} tells more")


class Progress:
    """The watcher's status line: rewritten in place on a terminal; elsewhere (a log) printed
    only when what it says changes, not each time its clock ticks."""

    def __init__(self) -> None:
        self._live = interactive()
        self._key: tuple[Any, ...] | None = None

    def show(self, key: tuple[Any, ...], text: str) -> None:
        if self._live:
            print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)
        elif key != self._key:
            print(text, file=sys.stderr, flush=True)
        self._key = key

    def done(self) -> None:
        """End the line, before other output (the round's log, the summary)."""
        if self._live and self._key is not None:
            print(file=sys.stderr, flush=True)
        self._key = None


def _since(stamp: str | None) -> str:
    if not stamp:
        return "no answer yet"
    seconds = max(0, int((datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()))
    return f"last answer {seconds // 60} min {seconds % 60} s ago" if seconds >= 60 else \
        f"last answer {seconds} s ago"


def watch(live: LiveProject, poll: float) -> str:
    """Push, journal, train, push again until the budget is spent or Ctrl+C; the closing line.

    Label Studio not answering (a restart) is waited out, and so is another STAR process
    working in the run (`star next`, `star serve` training). Bad data stops it in one line.
    """
    folder, progress = live.folder, Progress()
    try:
        while not budget_spent(folder, live.config):
            batch = folder.pending_batch()
            if batch is not None and not _complete(live, batch, progress, poll):
                continue  # the round ended elsewhere: look again
            if _in_use(folder):
                progress.show(("busy",), "another STAR process works in the run, waiting")
                time.sleep(poll)
                continue
            progress.done()
            run_next_round(folder)
    except KeyboardInterrupt:
        progress.done()
        return f"stopped (Ctrl+C); the same command goes on from here. {summary(folder)}"
    progress.done()
    return f"budget spent: {summary(folder)}"


def _complete(live: LiveProject, batch: Batch, progress: Progress, poll: float) -> bool:
    """Push `batch` and journal its annotations until each example has an answer (True), or
    until its round ends in another process (False)."""
    pushed = False
    ids = set(batch.ids)
    while True:
        trouble = ""
        try:
            if not pushed:
                live.push(batch)
                pushed = True
            live.sync(batch)
        except (Unreachable, Busy) as error:
            trouble = f" ({error}; trying again)" if isinstance(error, Unreachable) else \
                " (another STAR process works in the run; waiting)"
        pending = live.folder.pending_batch()
        if pending is None or pending.round != batch.round:
            return False
        answers = [a for i, a in live.folder.journal.latest().items() if i in ids]
        stamp = max((a.time for a in answers if a.time), default=None)
        progress.show((batch.round, len(answers), bool(trouble)),
                      f"round {batch.round}: answered {len(answers)} of {len(ids)}, {_since(stamp)}"
                      + trouble)
        if pushed and len(answers) == len(ids):
            return True
        time.sleep(poll)


def _in_use(folder: RunFolder) -> bool:
    """Whether another STAR process holds the run right now (a look, nothing kept held)."""
    with folder.shared() as free:
        return not free
