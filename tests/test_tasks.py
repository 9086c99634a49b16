"""Tasks: templates, the prompt/answer boundary, parsing and bad data."""

import json
import re

import pytest
from pydantic import ValidationError

from star.config import TaskConfig
from star.data.readers import stable_ids
from star.data.sources import load_task
from star.data.tasks import parse_number, split_boundary
from star.errors import DataError
from tests.conftest import SHARED_DATA, write_jsonl

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                  reason=f"shared paper data not found at {SHARED_DATA}")


@pytest.mark.parametrize(("text", "expected"), [
    ("so 3 + 4 = 7. The final answer is 42", "42"),
    ("The final answer is 1,250 dollars, not 3", "1250"),
    ("first 3 then 18 then 7", "7"),
    ("The final answer is -2.50", "-2.5"),
    ("no number here", ""),
    ("The final answer is 123456.7", "123456.7"),  # not rounded to 6 digits (123457)
    ("The final answer is 1,000", "1000"),
    ("it took 72.0 minutes", "72"),
    ("in the years 2020-2021", "2021"),  # a hyphen, not a minus
    ("she lost -$3", "-3"),
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_boundary_moves_trailing_space_into_the_answer():
    assert split_boundary("The correct answer is ", "D") == ("The correct answer is", " D")
    assert split_boundary("Answer:", "yes") == ("Answer:", " yes")
    assert split_boundary("Question?\n", "Step one") == ("Question?\n", "Step one")


def test_stable_ids_use_id_field_or_content_hash(tmp_path):
    def ids_of(records):
        return [example_id for example_id, _ in stable_ids(tmp_path / "f.jsonl", records)]

    ids = ids_of([(1, {"id": 7, "q": "a"}), (2, {"q": "b"}), (3, {"q": "b"})])
    assert ids[0] == "7"
    assert ids[2] == ids[1] + "#1"
    assert ids_of([(1, {"q": "b"})]) == ids[1:2]


def test_a_null_id_is_no_id(tmp_path):
    records = [(1, {"id": None, "q": "a"}), (2, {"id": None, "q": "b"})]
    ids = [example_id for example_id, _ in stable_ids(tmp_path / "f.jsonl", records)]
    assert len(set(ids)) == 2 and all(re.fullmatch("[0-9a-f]{16}", i) for i in ids)


def test_duplicate_ids_are_refused_with_both_lines(tmp_path):
    records = [(1, {"id": 7, "q": "a"}), (2, {"id": "x"}), (5, {"id": 7, "q": "b"})]
    with pytest.raises(DataError, match=r"f.jsonl:5: duplicate id '7' \(first on line 1\)"):
        list(stable_ids(tmp_path / "f.jsonl", records))


def custom(tmp_path, **extra) -> TaskConfig:
    values = {"name": "custom", "data_dir": str(tmp_path), "prompt": "Q: {question}\nA:",
              "labels": ["A", "B", "C", "D", "E"]} | extra
    return TaskConfig(**values)


def test_custom_choice_task(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "x", "answer": "E", "id": "a1"}])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "y", "answer": "B"}])
    task = load_task(custom(tmp_path))
    example = task.train[0]
    assert (example.id, example.prompt, example.response, example.gold) == ("a1", "Q: x\nA:", " E", "E")
    assert task.choices == [" A", " B", " C", " D", " E"]


def test_malformed_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"question": "x", "answer": "A"}\n{oops\n')
    write_jsonl(tmp_path / "test.jsonl", [{"question": "y", "answer": "B"}])
    with pytest.raises(DataError, match=r"train.jsonl:2: malformed JSON"):
        load_task(custom(tmp_path))


def test_missing_field_is_named(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"answer": "A"}])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "y", "answer": "B"}])
    with pytest.raises(DataError, match=r"train.jsonl:1: missing field 'question'"):
        load_task(custom(tmp_path))


def test_a_null_prompt_field_is_missing_not_none(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "x", "answer": "A"},
                                           {"question": None, "answer": "A"}])
    with pytest.raises(DataError, match=r"train.jsonl:2: missing field 'question'"):
        load_task(custom(tmp_path, test_file=None))


def test_json_booleans_are_the_labels_true_and_false(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "x", "answer": True}])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "y", "answer": False}])
    task = load_task(custom(tmp_path, labels=["true", "false"]))
    assert (task.train[0].response, task.train[0].gold) == (" true", "true")
    assert task.test[0].gold == "false"


@pytest.mark.parametrize(("train", "test", "message"), [
    (["x", "y\n"], ["z"], "train.jsonl:2: the prompt ends in a newline and the pool's first without"),
    (["x\n", "y \n "], ["z\n", "w"], "test.jsonl:2: the prompt ends without a newline and the "
                                      "pool's first in a newline"),
])
def test_the_prompts_of_a_choice_task_end_alike(tmp_path, train, test, message):
    """The label words are tokenised once, after the pool's first prompt: " A" after "x",
    "A" after "x\n"; a prompt ending otherwise would train on other tokens than it is scored on."""
    write_jsonl(tmp_path / "train.jsonl", [{"question": q, "answer": "A"} for q in train])
    write_jsonl(tmp_path / "test.jsonl", [{"question": q, "answer": "B"} for q in test])
    with pytest.raises(DataError, match=re.escape(message)):
        load_task(custom(tmp_path, prompt="{question}"))


def test_a_gsm8k_answer_without_a_number_after_the_marks_is_refused(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "2+2?", "answer": "2+2=4 #### four"}])
    with pytest.raises(DataError, match=r"train.jsonl:1: answer .* holds no number after '####'"):
        load_task(TaskConfig(name="gsm8k", data_dir=str(tmp_path), test_file=None))


def test_gold_label_outside_labels(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "x", "answer": "Z"}])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "y", "answer": "B"}])
    with pytest.raises(DataError, match=r"gold label 'Z' is not in task.labels"):
        load_task(custom(tmp_path))


def test_missing_data_folder_and_unknown_task(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task(custom(tmp_path / "nowhere"))
    with pytest.raises(ValidationError, match="known tasks: sst2, gsm8k, boolq, obqa, custom"):
        TaskConfig(name="squad", data_dir=str(tmp_path))


def test_tsv_with_verbalizer(tmp_path):
    (tmp_path / "train.tsv").write_text('sentence\tlabel\nit\'s "fine" \t1\nbad\t0\n')
    (tmp_path / "test.tsv").write_text("sentence\tlabel\ngood\t1\n")
    task = load_task(custom(tmp_path, train_file="train.tsv", test_file="test.tsv",
                            prompt="Review: {sentence}\nSentiment:", answer_field="label",
                            labels=["0", "1"], verbalizer={"0": "negative", "1": "positive"}))
    assert task.train[0].prompt == 'Review: it\'s "fine" \nSentiment:'
    assert task.train[0].response == " positive" and task.train[0].gold == "1"
    assert task.choices == [" negative", " positive"]


def test_csv_reads_quoted_fields_as_spreadsheets_write_them(tmp_path):
    (tmp_path / "train.csv").write_text('id,review,label\nr1,"Great, fun",1\n'
                                        'r2,"two\nlines, ""quoted""",0\nr3,plain,1\n')
    task = load_task(custom(tmp_path, train_file="train.csv", test_file=None,
                            prompt="Review: {review}\nSentiment:", answer_field="label",
                            labels=["0", "1"]))
    assert [e.prompt for e in task.train] == ["Review: Great, fun\nSentiment:",
                                              'Review: two\nlines, "quoted"\nSentiment:',
                                              "Review: plain\nSentiment:"]
    assert [e.gold for e in task.train] == ["1", "0", "1"]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("train.csv", "review,label\nok,1\nGreat, fun,1\n",
     ":3: the row has 3 fields, the header 2 (quote a field that holds a comma)"),
    ("train.csv", "review,label\nok\n", ":2: the row has 1 of the header's 2 fields"),
    ("train.tsv", "review\tlabel\nok\t1\textra\n", ":2: the row has 3 fields, the header 2"),
])
def test_a_row_with_the_wrong_number_of_fields_is_refused(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=re.escape(f"{name}{message}")):
        load_task(custom(tmp_path, train_file=name, test_file=None, prompt="{review}",
                         answer_field="label", labels=["0", "1"]))


def test_number_task_parses_gold(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "1+1?", "answer": "2"}])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "2+2?", "answer": "4.0"}])
    task = load_task(custom(tmp_path, answer_type="number", labels=None))
    assert task.test[0].gold == "4"
    assert task.is_correct(task.parse("The final answer is 4"), task.test[0].gold)


def test_builtin_obqa_prompts_from_the_shared_and_the_hub_layout(tmp_path):
    """The shared files hold the whole prompt in "question" (options as "AnswerA text", some
    with a colon); the hub has question_stem, choices and answerKey. One question in both
    layouts gives one prompt."""
    write_jsonl(tmp_path / "train.jsonl", [
        {"question": "The sun is responsible for\nAnswerA puppies learning new tricks\n"
                     "AnswerB plants sprouting\nAnswerC flowers wilting\nAnswerD rocks\n"
                     "The correct answer is ", "answer": "B"},
        {"question": "Which is a metal\nAnswerA: wood\nAnswerB glass\nAnswerC:iron\n"
                     "AnswerD water\nThe correct answer is ", "answer": "C"}])
    write_jsonl(tmp_path / "test.jsonl", [
        {"id": "7-980", "question_stem": "The sun is responsible for",
         "choices": {"text": ["puppies learning new tricks", "plants sprouting", "flowers wilting",
                              "rocks"], "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
        {"id": "8-1", "question_stem": "Ice is",
         "choices": {"text": ["hot", "frozen water", "a gas", "a metal"],
                     "label": ["A", "B", "C", "D"]}, "answerKey": "D"}])
    task = load_task(TaskConfig(name="obqa", data_dir=str(tmp_path)))
    sun = ("The sun is responsible for\nAnswerA: puppies learning new tricks\n"
           "AnswerB: plants sprouting\nAnswerC: flowers wilting\nAnswerD: rocks\n"
           "The correct answer is")
    assert [(e.prompt, e.response, e.gold) for e in task.train] == [
        (sun, " B", "B"),
        ("Which is a metal\nAnswerA: wood\nAnswerB: glass\nAnswerC: iron\nAnswerD: water\n"
         "The correct answer is", " C", "C")]
    assert [(e.id, e.prompt, e.response, e.gold) for e in task.test] == [
        ("7-980", sun, " B", "B"),
        ("8-1", "Ice is\nAnswerA: hot\nAnswerB: frozen water\nAnswerC: a gas\nAnswerD: a metal\n"
                "The correct answer is", " D", "D")]
    assert task.labels == ["A", "B", "C", "D"] and task.choices == [" A", " B", " C", " D"]
    assert task.test[1].fields == {"question": "Ice is"}


def test_builtin_boolq_prompts_and_answers_as_text_and_as_json_booleans(tmp_path):
    """The shared files carry the instruction in "question" and answer in words ("the correct
    answer is true"); the hub has a bare question (no "?"), a passage and a JSON boolean."""
    instruction = "Please answer the following question with true or false, question: "
    write_jsonl(tmp_path / "train.jsonl", [
        {"question": f"{instruction}is the sky blue?\n\nAnswer format: true/false",
         "answer": "the correct answer is true"},
        {"question": f"{instruction}is fire cold?\n\nAnswer format: true/false",
         "answer": "False"}])
    write_jsonl(tmp_path / "test.jsonl", [
        {"question": "is the sky blue", "answer": True, "passage": "The sky is blue by day."},
        {"question": "is fire cold", "answer": False, "passage": "Fire is hot."}])
    task = load_task(TaskConfig(name="boolq", data_dir=str(tmp_path)))
    sky = (f"{instruction}is the sky blue?\n\nAnswer format: true/false\n"
           "The correct answer is")
    fire = f"{instruction}is fire cold?\n\nAnswer format: true/false\nThe correct answer is"
    expected = [(sky, " true", "true"), (fire, " false", "false")]
    assert [(e.prompt, e.response, e.gold) for e in task.train] == expected
    assert [(e.prompt, e.response, e.gold) for e in task.test] == expected
    assert task.labels == ["true", "false"] and task.choices == [" true", " false"]


@needs_shared
def test_builtin_tasks_on_the_shared_data():
    obqa = load_task(TaskConfig(name="obqa", data_dir=str(SHARED_DATA / "OBQA")))
    assert len(obqa.train) == 4957 and len(obqa.test) == 500
    for example in (obqa.train[0], obqa.test[0]):
        assert "AnswerA: " in example.prompt and example.prompt.endswith("The correct answer is")
        assert example.response in (" A", " B", " C", " D")
    boolq = load_task(TaskConfig(name="boolq", data_dir=str(SHARED_DATA / "BoolQ")))
    assert boolq.train[0].prompt.endswith("true/false\nThe correct answer is")
    assert boolq.train[0].response == " true" and boolq.choices == [" true", " false"]
    gsm8k = load_task(TaskConfig(name="gsm8k", data_dir=str(SHARED_DATA / "GSM8K")))
    first = gsm8k.train[0]
    assert first.gold == "72" and first.response.endswith("The final answer is 72")
    assert "think step by step" in first.prompt


def test_jsonl_line_numbers_skip_blank_lines(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"question": "x", "answer": "A"}) + "\n\n[1]\n")
    write_jsonl(tmp_path / "test.jsonl", [{"question": "y", "answer": "B"}])
    with pytest.raises(DataError, match=r"train.jsonl:3: expected a JSON object"):
        load_task(custom(tmp_path))


def test_builtin_tasks_have_report_titles():
    from star.data.tasks import task_display_name

    assert [task_display_name(n) for n in ("gsm8k", "boolq", "obqa", "SST-2")] == \
        ["GSM8K", "BoolQ", "OBQA", "SST-2"]
