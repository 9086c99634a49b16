"""Building a task from its config: a built-in by name or `custom` from the user's files,
read from a data folder, or from the Hugging Face hub when no folder is given.

The pool (train file) may be unlabeled, wholly or in part; a test file must be labeled and
may be left out (`task.test_file: null`), and then there is no accuracy curve.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from star.config import TaskConfig
from star.data.readers import check_data_file, read_records, stable_ids
from star.data.table import example_table
from star.data.tasks import (
    BUILTIN_TASKS,
    Example,
    Task,
    TaskFormat,
    as_label,
    choice_respond,
    normalise_text,
    parse_number,
    split_boundary,
    task_display_name,
    template_fields,
)
from star.errors import DataError
from star.files import cache_root, write_jsonl


def _custom_format(config: TaskConfig) -> TaskFormat:
    if config.prompt is None:
        raise DataError("task 'custom' needs task.prompt, a template with {field} placeholders")
    if config.answer_type == "choice" and not config.labels:
        raise DataError("task 'custom' with answer_type 'choice' needs task.labels")
    template, names = config.prompt, template_fields(config.prompt)

    def fields(record: dict[str, Any]) -> dict[str, str]:
        """The template's fields as text; a null one is missing, not the word 'None'."""
        missing = [name for name in names if record.get(name) is None]
        if missing:
            raise KeyError(", ".join(missing))
        return {name: str(record[name]) for name in names}

    def answer(record: dict[str, Any]) -> str | None:
        value = as_label(record.get(config.answer_field))
        text = None if value is None else str(value).strip()
        return text or None

    if config.answer_type == "choice":
        respond = choice_respond(list(config.labels or []), config.verbalizer or {})
    elif config.answer_type == "number":
        def respond(value: str) -> tuple[str, str]:
            number = parse_number(value)
            if not number:
                raise ValueError(f"answer {value!r} holds no number")
            return value, number
    else:
        def respond(value: str) -> tuple[str, str]:
            return value, normalise_text(value)

    return TaskFormat(lambda record: template.format(**fields(record)), fields, answer, respond)


def read_examples(path: Path, form: TaskFormat, labeled: bool, *, one_boundary: bool = False,
                  newline: bool | None = None) -> Iterator[Example]:
    """The examples of one file, as they are read; with `labeled`, every record must carry
    its answer.

    With `one_boundary` (a choice task) every prompt must end as the pool's first does, in a
    newline or not (`newline`; None takes the first prompt read): the label words are
    tokenised once, with or without a leading space after that ending, for every example.
    """
    for example_id, (number, record) in stable_ids(path, read_records(path)):
        try:
            prompt, shown, answer = form.prompt(record), form.fields(record), form.answer(record)
            response, gold = form.respond(answer) if answer is not None else (None, None)
        except KeyError as exc:
            raise DataError(f"{path}:{number}: missing field {exc}") from None
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        if answer is None and labeled:
            raise DataError(f"{path}:{number}: no answer; a test file must be labeled")
        prompt, response = split_boundary(prompt, response or "")
        if one_boundary:
            if newline is None:
                newline = prompt.endswith("\n")
            elif prompt.endswith("\n") != newline:
                raise DataError(f"{path}:{number}: the prompt ends {_ending(not newline)} and the "
                                f"pool's first {_ending(newline)}; a choice task scores its label "
                                "words after one ending (a newline or a space), so every prompt "
                                "must end alike")
        yield Example(example_id, prompt, response if answer is not None else None, gold,
                      answer=answer, fields=shown)


def _ending(newline: bool) -> str:
    return "in a newline" if newline else "without a newline"


def _hub_records(dataset: str, subset: str | None, split: str, path: Path) -> Path:
    """Write a hub split as JSONL so hub and folder data go through the same reader."""
    from datasets import load_dataset

    try:
        rows = load_dataset(dataset, subset, split=split)
    except Exception as exc:  # the hub raises many types; the user needs one line
        raise DataError(f"could not load '{dataset}' from the hub ({exc}); "
                        "set task.data_dir to a local folder") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)  # whole or not at all: a cut download must not become the pool
    return path


def _data_paths(config: TaskConfig) -> tuple[Path, Path | None]:
    """The train (pool) file and the test file, or None without a test set."""
    if config.data_dir is not None:
        folder = Path(config.data_dir)
        if folder.is_file():
            raise DataError(f"task.data_dir '{folder}' is a file; it must be the folder that "
                            f"holds {config.train_file}")
        if not folder.is_dir():
            raise DataError(f"data folder '{folder}' does not exist")
        test = folder / config.test_file if config.test_file else None
        return folder / config.train_file, test
    builtin = BUILTIN_TASKS.get(config.name)
    if builtin is None:
        raise DataError("task 'custom' needs task.data_dir, the folder of its data files")
    dataset, subset, train_split, test_split = builtin.hub
    root = cache_root() / "data" / config.name
    paths = {"train": root / "train.jsonl", "test": root / "test.jsonl"}
    for split, path in ((train_split, paths["train"]), (test_split, paths["test"])):
        if not path.exists():
            _hub_records(dataset, subset, split, path)
    return paths["train"], paths["test"] if config.test_file else None


def load_task(config: TaskConfig) -> Task:
    """The task, its pool (train file, as a memory-mapped table) and its test set (a list;
    empty without a test file)."""
    builtin = BUILTIN_TASKS.get(config.name)
    if builtin is None:
        form, answer_type, labels = _custom_format(config), config.answer_type, list(config.labels or [])
    else:
        form, answer_type, labels = builtin.format, builtin.answer_type, list(builtin.labels)
    train_path, test_path = _data_paths(config)
    check_data_file(train_path)
    choice = answer_type == "choice"
    train = example_table(train_path, config.model_dump(exclude={"title"}),
                          lambda: read_examples(train_path, form, labeled=False, one_boundary=choice))
    test: list[Example] = []
    if test_path is not None:
        test = list(read_examples(test_path, form, labeled=True, one_boundary=choice,
                                  newline=train[0].prompt.endswith("\n")))
    choices = [split_boundary(train[0].prompt, form.respond(label)[0])[1] for label in labels]
    title = config.title or (Path(config.data_dir).name if builtin is None and config.data_dir
                             else task_display_name(config.name))
    return Task(config.name, answer_type, train, test, labels=labels, choices=choices,
                max_new_tokens=config.max_new_tokens, respond=form.respond, title=title)
