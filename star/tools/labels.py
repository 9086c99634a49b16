"""The commands around people's labels: status, the labeling page, batch export, import, and
the final export of the labeled set.

Every import is checked whole before anything is written: a label outside the task's set,
an unknown id or an id of another round stops it with the file and line, and the journal
stays as it was.
"""

from __future__ import annotations

import getpass
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from star.active.batch import Batch
from star.active.journal import Answer, annotator_agreement, in_force_of, now
from star.active.learning_curve import PARAMETERS, describe
from star.active.prompt_guard import evidence
from star.active.refit import kept_fits, of_one_class
from star.active.runfolder import RunFolder, complete_rounds
from star.active.stopping import STOP_KAPPA, STOP_WINDOW
from star.annotate.exchange import read_labels, write_batch
from star.annotate.labelstudio import model_version
from star.annotate.server import LabelingServer, serve
from star.config import load_config
from star.data.sources import load_task
from star.errors import DataError
from star.files import write_json, write_jsonl
from star.progress import interactive


def default_annotator() -> str:
    """The login name: two people's pages are told apart (agreement, undo) without a flag."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name, e.g. a container's unnamed user
        return "annotator"


def open_run(run: Path) -> RunFolder:
    folder = RunFolder(run)
    if folder.read_config() is None:
        raise DataError(f"'{run}' is not a run folder (no config.yaml); start one with star run")
    return folder


def waiting_batch(folder: RunFolder) -> Batch:
    """The batch that waits for labels, or a one-line error saying why there is none."""
    batch = folder.pending_batch()
    if batch is None:
        results = folder.read_results()
        done = bool(results and complete_rounds(results)) and not results.get("waiting")
        raise DataError(f"'{folder.root}' has no batch waiting for labels"
                        + ("; its rounds are complete" if done else ""))
    return batch


def next_steps(run: Path, waiting: dict[str, int]) -> str:
    """What to do now, printed when a run stops to wait for people; `waiting` as the loop
    records it in results.json (round, labels missing, batch size)."""
    return "\n".join([
        f"round {waiting['round']}: waiting for {waiting['labels']} of {waiting['batch']} labels. "
        "Label them with",
        f"  star label {run}                     (a page in your browser), or",
        f"  star batch {run} --format labelstudio --out tasks.json   (Label Studio;"
        f" also csv, jsonl),",
        f"  then star import {run} EXPORT_FILE",
        f"and continue with: star next {run}"])


def _signals(entry: dict[str, Any]) -> str:
    """The round's stopping signals on the fixed set, where there was a last round to compare."""
    if entry.get("agreement") is None:
        return ""
    text = f", agreement with the last round κ = {entry['agreement']:.3f}"
    if entry.get("changed") is not None:
        text += f", {100 * entry['changed']:.1f} % changed"
    if entry.get("uncertainty") is not None:
        text += f", mean uncertainty {entry['uncertainty']:.3f}"
    if entry.get("pool_uncertainty") is not None:
        text += f", pool uncertainty {entry['pool_uncertainty']:.3f}"
    return text


def _guard(entry: dict[str, Any]) -> str:
    """What the prompt guard handed out this round, and on what evidence."""
    check = entry.get("guard")
    if not check:
        return ""
    return (f"; guard: the {check['chosen']} model ({evidence(check)}, base model "
            f"{100 * check['base']:.1f} % on the {check['labels']} labels, "
            f"{check['metric'].replace('_', ' ')})")


def _fit(entry: dict[str, Any]) -> str:
    """Where the round trained again because its adapter did not fit its own labels, or
    handed out the base model because they held one class."""
    check = entry.get("fit")
    if check and of_one_class(check):
        return "; labels of one class, no draw can beat chance: the base model handed out"
    if not check or len(check["draws"]) < 2:
        return ""
    kept = (f"draw {check['kept'] + 1} kept"
            if kept_fits(check) else
            f"none of {len(check['draws'])} draws fitted: the base model handed out")
    return (f"; trained again: {len(check['draws'])} draws fitted its labels at "
            + ", ".join(f"{100 * d:.1f}" for d in check["draws"])
            + f" % against the base model's {100 * check['base']:.1f} % "
            f"({check['metric'].replace('_', ' ')}), {kept}")


def _bandit(entry: dict[str, Any]) -> str:
    """How `auto` shared this round's draw among its arms, and the reward its picks earned."""
    record = entry.get("bandit")
    if not record:
        return ""
    shares = ", ".join(f"{arm} {100 * p:.0f} %"
                       for arm, p in zip(record["arms"], record["probabilities"], strict=True))
    return f"; auto: drawn with {shares}, reward {100 * record['reward']:.1f} %"


def _anchoring(entry: dict[str, Any]) -> str:
    """How many answers of the round's batch equal the model's suggestion (anchoring)."""
    agreement = entry.get("suggestion_agreement")
    if not agreement:
        return ""
    blind = " (blind)" if entry.get("blind") else ""
    return (f"; {agreement['agreeing']} of {agreement['answered']} answers equal the model's "
            f"suggestion{blind}")


def status(run: Path) -> str:
    folder = open_run(run)
    results = folder.read_results() or {}
    done = complete_rounds(results) if results else []
    lines = [f"{run}: {results.get('strategy', '?')} seed {results.get('seed', '?')}, "
             f"{len(done)} rounds complete"]
    baselines = results.get("baselines") or {}
    if baselines.get("zero_shot") is not None:
        lines.append("  before training: " + ", ".join(
            f"{name.replace('_', '-')} {100 * value:.2f} %" for name, value in baselines.items()
            if value is not None))
    for entry in done:
        shown = (f"accuracy {100 * entry['accuracy']:.2f} %" if entry.get("accuracy") is not None
                 else "no test set")
        lines.append(f"  round {entry['round']}: {entry['n_labeled']} labels, {shown}, "
                     f"labels {entry.get('label_counts', {})}" + _signals(entry)
                     + _guard(entry) + _fit(entry) + _bandit(entry) + _anchoring(entry))
    stopping = results.get("stopping") or {}
    if stopping.get("stop_advised"):
        lines.append(f"stopping advised: predictions agree across the last {STOP_WINDOW} rounds "
                     f"(mean κ = {stopping['kappa_window']:.3f} ≥ {STOP_KAPPA})")
    elif done:
        lines.append(f"stopping not yet advised (needs mean κ ≥ {STOP_KAPPA} over the last "
                     f"{STOP_WINDOW} rounds)")
    points = sum(entry.get("accuracy") is not None for entry in done)
    if results.get("forecast"):
        lines.append(describe(results["forecast"]))
    elif points:
        lines.append(f"no forecast from {points} points" + (
            f" (it needs {PARAMETERS + 1})" if points <= PARAMETERS else " (the curve did not fit)"))
    check = results.get("forecast_check")
    if check:
        lines.append(f"forecast check on this run: fitted on its first {check['fitted_on']} "
                     f"points, the rest predicted with mean error "
                     f"{100 * check['mean_abs_error']:.2f} points (max "
                     f"{100 * check['max_abs_error']:.2f})")
    batch = folder.pending_batch()
    if batch is not None and results.get("waiting"):
        answered = folder.journal.latest()
        missing = sum(i not in answered for i in batch.ids)
        lines.append(next_steps(run, {"round": batch.round, "labels": missing,
                                          "batch": len(batch.ids)}) if missing else
                     f"round {batch.round}: all {len(batch.ids)} labels are in; continue with: "
                     f"star next {run}")
    pairs = annotator_agreement(folder.journal)
    if pairs:
        lines.append("annotator agreement: " + "; ".join(
            f"{p['annotators'][0]} vs {p['annotators'][1]}: κ = {p['kappa']:.3f} on "
            f"{p['examples']} examples" for p in pairs))
    return "\n".join(lines)


def is_blind(folder: RunFolder, blind: bool) -> bool:
    """Whether people label without the model's guess: `--blind`, or the run's
    `loop.blind_labeling` (a team's choice for every page and export of the run)."""
    return blind or load_config(folder.config_path).loop.blind_labeling


def page_server(run: Path, annotator: str, host: str = "127.0.0.1", port: int = 0,
                blind: bool = False) -> LabelingServer:
    """The labeling page of the batch that waits in `run`. It takes answers only while that
    batch waits and no `star next` holds the run: once a round trains on them, an open page
    cannot change them."""
    folder = open_run(run)
    batch = waiting_batch(folder)

    @contextmanager
    def closed() -> Iterator[str | None]:
        with folder.shared() as free:  # held while the answer is written: `star next` waits
            if not free:
                yield ("`star next` is using the run now and may be training on these answers, "
                       "which cannot change meanwhile; try again once it has finished")
                return
            waiting = folder.pending_batch()
            if waiting is None or waiting.round != batch.round:
                yield (f"round {batch.round} has ended and trained on these answers, which can "
                       f"no longer change; close this page (the run goes on with: star next {run})")
                return
            yield None

    return LabelingServer(batch, folder.journal, annotator, host, port=port,
                          done_hint=f"star next {run}", closed=closed, blind=is_blind(folder, blind))


def label_page(run: Path, host: str, port: int, annotator: str, blind: bool = False) -> None:
    serve(page_server(run, annotator, host, port, blind))


def export_batch(run: Path, fmt: str, out: Path, blind: bool = False) -> Path:
    folder = open_run(run)
    batch = waiting_batch(folder)
    write_batch(batch, out, fmt, model_version=model_version(folder, batch.round),
                blind=is_blind(folder, blind))
    return out


@dataclass(frozen=True)
class Imported:
    """What `star import` did with a file's labels."""

    journaled: int
    unchanged: int
    """The author's latest answer already says this (the file was imported before)."""
    superseded: int
    """Older than the answer in force (say, corrected on the page since the export)."""
    finished: int
    """Of finished rounds, equal to what the round trained on (a whole project's export)."""

    def describe(self, run: Path) -> str:
        skipped = [f"{count} {what}" for count, what in (
            (self.unchanged, "unchanged"), (self.superseded, "older than the answer in force"),
            (self.finished, "of finished rounds, as trained")) if count]
        return (f"{self.journaled} labels imported into {run}"
                + (f" ({'; '.join(skipped)} left out)" if skipped else "")
                + f"; star status {run} shows what is left")


def import_labels(run: Path, path: Path, annotator: str | None) -> Imported:
    """Check every label of `path` against the waiting batch, then journal them all.

    A file may hold more than the batch needs: a Label Studio project exported whole after
    several rounds, or exported again after some answers were corrected on the page. So an
    answer its author already gave, or older than the answer in force, or of a finished round
    and equal to what that round trained on, is left out; a finished round's label that
    differs is refused, since its round cannot be retrained.
    """
    folder = open_run(run)
    with folder.lock():  # not while `star next` trains on the journal's answers
        return _import(folder, path, annotator)


def _import(folder: RunFolder, path: Path, annotator: str | None) -> Imported:
    batch = waiting_batch(folder)
    results = folder.read_results()
    round_of = {i: r["round"] for r in (complete_rounds(results) if results else [])
                for i in r["selected_ids"]}
    lines = folder.journal.answers()
    in_force = in_force_of(lines)  # the journal read once
    by_author = {(a.annotator, a.id): a.value for a in lines}
    answers: list[Answer] = []
    unchanged = superseded = finished = 0
    for label in read_labels(path, annotator):
        if label.id in round_of:
            value = batch.stored(label.id, label.value, label.where)
            trained = in_force[label.id].value if label.id in in_force else None
            if value == trained:
                finished += 1
                continue
            raise DataError(f"{label.where}: id {label.id!r} belongs to round {round_of[label.id]}, "
                            f"which trained on {trained!r}; this file says {value!r}, and a finished "
                            f"round's label cannot change (round {batch.round} waits for labels)")
        value = batch.check(label.id, label.value, label.where)
        current = in_force.get(label.id)
        if by_author.get((label.annotator, label.id)) == value:
            unchanged += 1
        elif label.time and current and current.time and label.time < _parse_time(current.time):
            superseded += 1
        else:
            answer = Answer(label.id, value, label.annotator, batch.round, source="import",
                            time=label.time.isoformat(timespec="seconds") if label.time else now())
            answers.append(answer)
            by_author[(label.annotator, label.id)] = value
            in_force[label.id] = answer
    folder.journal.append(answers)
    return Imported(len(answers), unchanged, superseded, finished)


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def export_labeled(run: Path, out: Path) -> dict[str, Any]:
    """The labeled set as JSONL and as a `datasets` dataset, and the last round's adapter.
    `export.json` is written last, so a folder without it holds an export that was cut short."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    if not interactive():  # a bar per save is noise in logs
        disable_progress_bar()
    folder = open_run(run)
    results = folder.read_results()
    if not results or not complete_rounds(results):
        raise DataError(f"'{run}' has no complete round yet")
    task = load_task(load_config(folder.config_path).task)
    by_id = {e.id: e for e in task.train}
    ids = [i for r in complete_rounds(results) for i in r["selected_ids"]]
    answers = folder.journal.in_force(ids)
    rows = []
    for i in ids:
        labeled = task.with_label(by_id[i], answers[i].value)
        rows.append({"id": i, **labeled.fields, "label": answers[i].value, "prompt": labeled.prompt,
                     "response": labeled.response, "annotator": answers[i].annotator,
                     "round": answers[i].round, "source": answers[i].source})
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.json").unlink(missing_ok=True)  # written last: without it, the export is partial
    write_jsonl(out / "labeled.jsonl", rows)
    Dataset.from_list(rows).save_to_disk(str(out / "dataset"))
    last = complete_rounds(results)[-1]["round"]
    shutil.copytree(folder.saved_adapter(last), out / "adapter", dirs_exist_ok=True)
    summary = {"labels": len(rows), "complete_rounds": len(complete_rounds(results)),
               "adapter_round": last}
    write_json(out / "export.json", summary)
    return summary
