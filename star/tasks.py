"""Tasks: turning data files into prompts, gold responses and scorers.

A task owns the prompt/response boundary. Trailing spaces of a prompt move into the
response (" true", not "true" after "is "), so the answer is always its own token(s) and
tokenising prompt and response apart gives the same ids the model saw in training.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from star.config import TaskConfig
from star.errors import DataError

GSM8K_INSTRUCTION = (
    "Answer the above question. First, think step by step and then answer the final number."
)
FINAL_ANSWER = "The final answer is"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    response: str
    """The gold response exactly as appended to the prompt (leading space included)."""
    gold: str
    """The gold answer in comparable form: a label, a number as text, or normalised text."""


@dataclass
class Task:
    name: str
    answer_type: str
    train: list[Example]
    test: list[Example]
    labels: list[str] = field(default_factory=list)
    """Gold labels of a choice task; `choices[i]` is how the model says `labels[i]`."""
    choices: list[str] = field(default_factory=list)
    max_new_tokens: int = 256

    @property
    def generative(self) -> bool:
        return self.answer_type != "choice"

    def parse(self, generated: str) -> str:
        """The comparable answer in a generated response."""
        if self.answer_type == "number":
            return parse_number(generated)
        return normalise_text(generated)

    def is_correct(self, prediction: str, gold: str) -> bool:
        if self.answer_type == "number":
            try:
                return abs(float(prediction) - float(gold)) < 1e-6
            except ValueError:
                return False
        return prediction == gold


def parse_number(text: str) -> str:
    """The number after "The final answer is", else the last number; "" when there is none."""
    tail = text.split(FINAL_ANSWER, 1)[1] if FINAL_ANSWER in text else None
    found = _NUMBER.findall(tail) if tail is not None else []
    if not found:
        found = _NUMBER.findall(text)
        found = found[-1:]
    if not found:
        return ""
    value = float(found[0].replace(",", ""))
    return f"{value:g}" if value != int(value) else str(int(value))


def normalise_text(text: str) -> str:
    text = text.strip().lower().strip(string.punctuation + " ")
    return " ".join(text.split())


def split_boundary(prompt: str, response: str) -> tuple[str, str]:
    """Move trailing spaces of the prompt into one leading space of the response."""
    stripped = prompt.rstrip(" \t")
    if stripped.endswith("\n"):
        return stripped, response.lstrip(" ")
    return stripped, " " + response.lstrip(" ")


def stable_ids(records: Iterable[dict[str, Any]]) -> list[str]:
    """The `id` field when present, else a content hash; repeats get a `#n` suffix."""
    seen: dict[str, int] = {}
    ids = []
    for record in records:
        if "id" in record:
            base = str(record["id"])
        else:
            digest = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
            base = digest[:16]
        count = seen.get(base, 0)
        seen[base] = count + 1
        ids.append(base if count == 0 else f"{base}#{count}")
    return ids


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs from a .jsonl, .tsv or .csv file."""
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist")
    if path.suffix in (".tsv", ".csv"):
        delimiter = "\t" if path.suffix == ".tsv" else ","
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE)
            return [(number + 2, dict(row)) for number, row in enumerate(reader)]
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object")
            records.append((number, record))
    if not records:
        raise DataError(f"data file '{path}' holds no examples")
    return records


Builder = Callable[[dict[str, Any]], tuple[str, str, str]]
"""Maps a record to (prompt, response, gold)."""


def _examples(path: Path, build: Builder) -> list[Example]:
    rows = read_records(path)
    ids = stable_ids(record for _, record in rows)
    examples = []
    for example_id, (number, record) in zip(ids, rows, strict=True):
        try:
            prompt, response, gold = build(record)
        except KeyError as exc:
            raise DataError(f"{path}:{number}: missing field {exc}") from None
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        prompt, response = split_boundary(prompt, response)
        examples.append(Example(example_id, prompt, response, gold))
    return examples


def _gsm8k(record: dict[str, Any]) -> tuple[str, str, str]:
    answer = str(record["answer"])
    if "####" not in answer:
        raise ValueError("GSM8K answer has no '####' line")
    gold = parse_number(answer.split("####")[-1])
    response = answer.replace("####", FINAL_ANSWER)
    return f"{record['question']}\n{GSM8K_INSTRUCTION}\n", response, gold


def _boolq(record: dict[str, Any]) -> tuple[str, str, str]:
    answer = record["answer"]
    gold = str(answer).split()[-1].lower() if not isinstance(answer, bool) else str(answer).lower()
    if gold not in ("true", "false"):
        raise ValueError(f"BoolQ answer {answer!r} does not end in true or false")
    question = str(record["question"])
    if "passage" in record:  # hub layout: add the instruction the shared files carry inline
        question = (f"Please answer the following question with true or false, question: "
                    f"{question}?\n\nAnswer format: true/false")
    return f"{question}\nThe correct answer is", gold, gold


_OBQA_OPTION = re.compile(r"^Answer([A-D]):?\s*", re.MULTILINE)


def _obqa(record: dict[str, Any]) -> tuple[str, str, str]:
    if "question_stem" in record:  # hub layout
        options = "\n".join(f"Answer{label}: {text}" for label, text in
                            zip(record["choices"]["label"], record["choices"]["text"], strict=True))
        question, gold = f"{record['question_stem']}\n{options}\nThe correct answer is", \
            record["answerKey"]
    else:
        question, gold = str(record["question"]), str(record["answer"]).strip()
    if gold not in "ABCD" or len(gold) != 1:
        raise ValueError(f"OBQA answer {gold!r} is not one of A, B, C, D")
    return _OBQA_OPTION.sub(lambda m: f"Answer{m.group(1)}: ", question), gold, gold


@dataclass(frozen=True)
class BuiltinTask:
    title: str
    """How reports name the task."""
    answer_type: str
    build: Builder
    labels: tuple[str, ...] = ()
    hub: tuple[str, str | None, str, str] = ("", None, "train", "test")
    """(dataset id, config, train split, test split) for loading when online."""


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "gsm8k": BuiltinTask("GSM8K", "number", _gsm8k, hub=("openai/gsm8k", "main", "train", "test")),
    "boolq": BuiltinTask("BoolQ", "choice", _boolq, ("true", "false"),
                         ("google/boolq", None, "train", "validation")),
    "obqa": BuiltinTask("OBQA", "choice", _obqa, ("A", "B", "C", "D"),
                        ("allenai/openbookqa", "main", "train", "test")),
}
TASK_NAMES = (*BUILTIN_TASKS, "custom")


def task_display_name(name: str) -> str:
    """A built-in task's title (`obqa` -> `OBQA`); any other name as it is."""
    builtin = BUILTIN_TASKS.get(name)
    return builtin.title if builtin else name


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _custom_builder(config: TaskConfig) -> Builder:
    if config.prompt is None:
        raise DataError("task 'custom' needs task.prompt, a template with {field} placeholders")
    if config.answer_type == "choice" and not config.labels:
        raise DataError("task 'custom' with answer_type 'choice' needs task.labels")
    fields = _fields(config.prompt)
    labels = config.labels or []
    verbalizer = config.verbalizer or {}

    def build(record: dict[str, Any]) -> tuple[str, str, str]:
        missing = [name for name in [*fields, config.answer_field] if name not in record]
        if missing:
            raise KeyError(", ".join(missing))
        prompt = config.prompt.format(**{name: record[name] for name in fields})
        gold = str(record[config.answer_field]).strip()
        if config.answer_type == "choice":
            if gold not in labels:
                raise ValueError(f"gold label {gold!r} is not in task.labels {labels}")
            return prompt, verbalizer.get(gold, gold), gold
        if config.answer_type == "number":
            number = parse_number(gold)
            if not number:
                raise ValueError(f"answer {gold!r} holds no number")
            return prompt, gold, number
        return prompt, gold, normalise_text(gold)

    return build


def _hub_records(dataset: str, config: str | None, split: str, path: Path) -> Path:
    """Write a hub split as JSONL so hub and folder data go through the same reader."""
    from datasets import load_dataset

    try:
        rows = load_dataset(dataset, config, split=split)
    except Exception as exc:  # the hub raises many types; the user needs one line
        raise DataError(f"could not load '{dataset}' from the hub ({exc}); "
                        "set task.data_dir to a local folder") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def load_task(config: TaskConfig, cache_dir: Path | None = None) -> Task:
    """Build a task from its config: a built-in by name, or `custom` from the user's files."""
    if config.name not in TASK_NAMES:
        raise DataError(f"unknown task '{config.name}'; known tasks: {', '.join(TASK_NAMES)}")
    builtin = BUILTIN_TASKS.get(config.name)
    if builtin is None:
        build, answer_type = _custom_builder(config), config.answer_type
        labels = list(config.labels or [])
    else:
        build, answer_type, labels = builtin.build, builtin.answer_type, list(builtin.labels)
    if config.data_dir is not None:
        folder = Path(config.data_dir)
        if not folder.is_dir():
            raise DataError(f"data folder '{folder}' does not exist")
        train_path, test_path = folder / config.train_file, folder / config.test_file
    elif builtin is not None:
        from star.models import cache_root

        dataset, subset, train_split, test_split = builtin.hub
        root = (cache_dir or cache_root()) / "data" / config.name
        train_path = root / "train.jsonl"
        test_path = root / "test.jsonl"
        if not train_path.exists():
            _hub_records(dataset, subset, train_split, train_path)
        if not test_path.exists():
            _hub_records(dataset, subset, test_split, test_path)
    else:
        raise DataError("task 'custom' needs task.data_dir, the folder of its data files")
    train, test = _examples(train_path, build), _examples(test_path, build)
    verbalizer = config.verbalizer or {}
    choices = [split_boundary(train[0].prompt, verbalizer.get(label, label))[1] for label in labels]
    return Task(config.name, answer_type, train, test, labels, choices, config.max_new_tokens)
