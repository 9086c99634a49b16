"""Tasks: turning data files into prompts, gold responses and scorers.

A task owns the prompt/response boundary. Trailing spaces of a prompt move into the
response (" true", not "true" after "is "), so the answer is always its own token(s) and
tokenising prompt and response apart gives the same ids the model saw in training.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

GSM8K_INSTRUCTION = (
    "Answer the above question. First, think step by step and then answer the final number."
)
FINAL_ANSWER = "The final answer is"
_NUMBER = re.compile(r"(?:(?<!\w)-\$?)?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
"""A number; '-' is its sign only where no word or digit comes before it ('2020-2021' holds
2020 and 2021), and may stand before a dollar sign ('-$3')."""


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    response: str | None
    """The gold response exactly as appended to the prompt (leading space included);
    None while the example is unlabeled."""
    gold: str | None
    """The gold answer in comparable form: a label, a number as text, or normalised text."""
    answer: str | None = None
    """The answer as an annotator gives it (a label, a number, a worked solution); the
    oracle annotator answers with it."""
    fields: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    """The record's fields that the prompt shows, for annotators."""


@dataclass
class Task:
    name: str
    answer_type: str
    train: Sequence[Example]
    """The pool: an `ExampleTable` when read from a file (lists work as well)."""
    test: list[Example]
    labels: list[str] = field(default_factory=list)
    """Gold labels of a choice task; `choices[i]` is how the model says `labels[i]`."""
    choices: list[str] = field(default_factory=list)
    max_new_tokens: int = 256
    respond: Callable[[str], tuple[str, str]] | None = None
    """Maps an answer (as an annotator gives it) to (gold response, comparable gold)."""
    title: str = ""
    """How reports name the task."""

    def with_label(self, example: Example, value: str) -> Example:
        """The example labeled with `value`: the response the model trains on and the gold."""
        if self.respond is None:
            raise ValueError(f"task {self.name} cannot take labels")
        response, gold = self.respond(value)
        prompt, response = split_boundary(example.prompt, response)
        return replace(example, prompt=prompt, response=response, gold=gold, answer=value)

    def display(self) -> dict[str, str]:
        """How each label is shown to annotators: the words the model answers with."""
        return {label: words.strip() for label, words in zip(self.labels, self.choices,
                                                               strict=True)}

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
    value = float(found[0].replace(",", "").replace("$", ""))
    # 15 significant digits, as many as a double keeps: '123456.7' must not round to a gold 123457
    return format(value, ".15g") if value != int(value) else str(int(value))


def normalise_text(text: str) -> str:
    text = text.strip().lower().strip(string.punctuation + " ")
    return " ".join(text.split())


def as_label(value: Any) -> Any:
    """A label as text, as the data spells it: JSON's and YAML's `true` is "true" (Python's
    str() writes "True"), the number 1 is "1"; text and anything else pass unchanged."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, int | float) else value


def template_fields(template: str) -> list[str]:
    """The names of a prompt template's placeholders ("" for a bare {}); ValueError for a
    template Python cannot parse (a lone brace)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def split_boundary(prompt: str, response: str) -> tuple[str, str]:
    """Move trailing spaces of the prompt into one leading space of the response."""
    stripped = prompt.rstrip(" \t")
    if stripped.endswith("\n"):
        return stripped, response.lstrip(" ")
    return stripped, " " + response.lstrip(" ")


@dataclass(frozen=True)
class TaskFormat:
    """How a task reads a record and takes an answer."""

    prompt: Callable[[dict[str, Any]], str]
    fields: Callable[[dict[str, Any]], dict[str, str]]
    answer: Callable[[dict[str, Any]], str | None]
    """The record's answer as an annotator would give it; None when it has none."""
    respond: Callable[[str], tuple[str, str]]
    """An answer -> (gold response, comparable gold); ValueError when it is not valid."""


def _present(record: dict[str, Any], name: str) -> str | None:
    """A field's value as text, None when it is missing or empty (an unlabeled record)."""
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value)


def _gsm8k_respond(value: str) -> tuple[str, str]:
    """The gold is the number after '####' (without '####', the last number); an answer with
    no such number is refused, as its gold '' would match no prediction."""
    marked = "####" in value
    gold = parse_number(value.split("####")[-1])
    if not gold:
        raise ValueError(f"answer {value!r} holds no number" + (" after '####'" if marked else ""))
    return value.replace("####", FINAL_ANSWER) if marked else value, gold


def _gsm8k_answer(record: dict[str, Any]) -> str | None:
    answer = _present(record, "answer")
    if answer is not None and "####" not in answer:
        raise ValueError("GSM8K answer has no '####' line")
    return answer


def _boolq_answer(record: dict[str, Any]) -> str | None:
    answer = record.get("answer")
    if isinstance(answer, bool):
        return as_label(answer)
    text = _present(record, "answer")
    return None if text is None else text.split()[-1].lower()


def _boolq_prompt(record: dict[str, Any]) -> str:
    question = str(record["question"])
    if "passage" in record:  # hub layout: add the instruction the shared files carry inline
        question = (f"Please answer the following question with true or false, question: "
                    f"{question}?\n\nAnswer format: true/false")
    return f"{question}\nThe correct answer is"


_OBQA_OPTION = re.compile(r"^Answer([A-D]):?\s*", re.MULTILINE)


def _obqa_prompt(record: dict[str, Any]) -> str:
    if "question_stem" in record:  # hub layout
        options = "\n".join(f"Answer{label}: {text}" for label, text in
                            zip(record["choices"]["label"], record["choices"]["text"], strict=True))
        return f"{record['question_stem']}\n{options}\nThe correct answer is"
    return _OBQA_OPTION.sub(lambda m: f"Answer{m.group(1)}: ", str(record["question"]))


def _obqa_answer(record: dict[str, Any]) -> str | None:
    answer = _present(record, "answerKey" if "question_stem" in record else "answer")
    return None if answer is None else answer.strip()


def choice_respond(labels: list[str], verbalizer: dict[str, str]) -> Callable[[str], tuple[str, str]]:
    """A label -> (the words the model answers with, the label); others are refused."""

    def respond(value: str) -> tuple[str, str]:
        value = value.strip()
        if value not in labels:
            raise ValueError(f"gold label {value!r} is not in task.labels {labels}")
        return verbalizer.get(value, value), value

    return respond


def _question_fields(record: dict[str, Any]) -> dict[str, str]:
    return {"question": str(record.get("question", record.get("question_stem", "")))}


@dataclass(frozen=True)
class BuiltinTask:
    title: str
    """How reports name the task."""
    answer_type: str
    format: TaskFormat
    labels: tuple[str, ...] = ()
    """The labels; a choice task's format maps each to the words the model answers with."""
    hub: tuple[str, str | None, str, str] = ("", None, "train", "test")
    """(dataset id, config, train split, test split) for loading when online."""


SST2_PROMPT = "Review: {sentence}\nSentiment (positive or negative):"

BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "sst2": BuiltinTask("SST-2", "choice", TaskFormat(
        lambda r: SST2_PROMPT.format(sentence=r["sentence"]),
        lambda r: {"sentence": str(r["sentence"])}, lambda r: _present(r, "label"),
        choice_respond(["0", "1"], {"0": "negative", "1": "positive"})),
        ("0", "1"), hub=("stanfordnlp/sst2", None, "train", "validation")),
    "gsm8k": BuiltinTask("GSM8K", "number", TaskFormat(
        lambda r: f"{r['question']}\n{GSM8K_INSTRUCTION}\n", _question_fields, _gsm8k_answer,
        _gsm8k_respond), hub=("openai/gsm8k", "main", "train", "test")),
    "boolq": BuiltinTask("BoolQ", "choice", TaskFormat(
        _boolq_prompt, _question_fields, _boolq_answer, choice_respond(["true", "false"], {})),
        ("true", "false"), hub=("google/boolq", None, "train", "validation")),
    "obqa": BuiltinTask("OBQA", "choice", TaskFormat(
        _obqa_prompt, _question_fields, _obqa_answer, choice_respond(list("ABCD"), {})),
        ("A", "B", "C", "D"), hub=("allenai/openbookqa", "main", "train", "test")),
}
TASK_NAMES = (*BUILTIN_TASKS, "custom")


def task_display_name(name: str) -> str:
    """A built-in task's title (`obqa` -> `OBQA`); any other name as it is."""
    builtin = BUILTIN_TASKS.get(name)
    return builtin.title if builtin else name


def class_weights(golds: Sequence[str | None],
                  mass: Sequence[float] | None = None) -> list[float]:
    """A weight per example, M / (classes · M_class), so each class present weighs the same
    and the weights, times the mass, average 1. M sums every example's mass, M_class its
    class's; the mass is 1 an example (so n / (classes · n_class)) unless given.

    The training loss uses the counts: with a handful of labels the warm start is often
    lopsided (13 of 16 one way in the SST-2 study), and an adapter trained on it learns that
    prior, answers the majority label and falls below the untrained prompt; weighting the
    classes alike keeps the prompt's prior. `auto`'s reward passes each pick's importance as
    its mass, so the classes weigh alike in the pool the picks stand for."""
    mass = [1.0] * len(golds) if mass is None else list(mass)
    totals: dict[str | None, float] = {}
    for gold, amount in zip(golds, mass, strict=True):
        totals[gold] = totals.get(gold, 0.0) + amount
    whole = sum(mass)
    return [whole / (len(totals) * totals[gold]) for gold in golds]
