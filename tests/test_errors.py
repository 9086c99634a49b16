"""Every bad input a user can make gets one line on stderr and exit code 2, never a traceback.

Each case goes through the CLI's `main`, as the shell would call it, and checks the line names
what to fix (the file and line, the key, the folder).
"""

from __future__ import annotations

import pytest

from star.tools.cli import main
from tests.conftest import refuse_writes_below, toy_records, write_jsonl


def sets(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


def one_line_error(capsys, argv: list[str]) -> str:
    """Run `star argv`; it must exit 2 with exactly one stderr line and no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and err.startswith("star: error: ")
    return err


@pytest.fixture
def data_dir(tmp_path):
    """A fresh copy of the toy task that a test may spoil."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", toy_records(40, 0))
    write_jsonl(folder / "test.jsonl", toy_records(10, 1))
    return folder


def run_argv(out, overrides: list[str], *extra: str) -> list[str]:
    return ["run", "--strategy", "random", "--out", str(out), *extra, *sets(overrides)]


@pytest.mark.parametrize(("name", "line"), [
    ("train.jsonl", b'{"question": "caf\xe9 cat dog", "answer": "yes"}\n'),
    ("train.csv", b"caf\xe9 cat dog,yes\n"),
])
def test_non_utf8_data_names_the_file_and_line(tiny_overrides, data_dir, tmp_path, capsys,
                                               name, line):
    """A Latin-1 byte on line 3 must be reported there, not as a UnicodeDecodeError traceback."""
    rows = [b"question,answer\n", b"red cat dog,yes\n"] if name.endswith(".csv") else \
        (data_dir / "train.jsonl").read_bytes().splitlines(keepends=True)[:2]
    (data_dir / name).write_bytes(b"".join([*rows, line]))
    err = one_line_error(capsys, run_argv(tmp_path / "r", [
        *tiny_overrides, f"task.data_dir={data_dir}", f"task.train_file={name}"]))
    assert f"{data_dir / name}:3: not UTF-8" in err


def test_a_byte_order_mark_is_not_part_of_the_first_field(tiny_overrides, data_dir, tmp_path):
    """Excel's 'CSV UTF-8' starts with a BOM; read as text it would rename the first column
    to '\\ufeffquestion' and every row would miss its 'question' field."""
    rows = "".join(f"{r['question']},{r['answer']}\n" for r in toy_records(40, 0))
    (data_dir / "train.csv").write_bytes("\ufeffquestion,answer\n".encode() + rows.encode())
    assert main(run_argv(tmp_path / "r", [*tiny_overrides, f"task.data_dir={data_dir}",
                                          "task.train_file=train.csv", "loop.budget=8"])) == 0


def test_header_only_csv_is_refused(tiny_overrides, data_dir, tmp_path, capsys):
    """A CSV with its header and no rows holds no examples: say so, naming the file."""
    (data_dir / "train.csv").write_text("question,answer\n")
    err = one_line_error(capsys, run_argv(tmp_path / "r", [
        *tiny_overrides, f"task.data_dir={data_dir}", "task.train_file=train.csv"]))
    assert f"data file '{data_dir / 'train.csv'}' holds no examples" in err


def test_unparsable_override_value(tiny_overrides, tmp_path, capsys):
    """`loop.budget=[1` is not YAML: the message quotes the override."""
    err = one_line_error(capsys, run_argv(tmp_path / "r", [*tiny_overrides, "loop.budget=[1"]))
    assert "override 'loop.budget=[1'" in err and "not valid YAML" in err


def test_negative_seed_is_refused_and_leaves_no_folder(tiny_overrides, tmp_path, capsys):
    out = tmp_path / "r"
    err = one_line_error(capsys, run_argv(out, tiny_overrides, "--seed", "-1"))
    assert "config key 'seed'" in err and "greater than or equal to 0" in err
    assert not out.exists()


def test_out_that_is_a_file(tiny_overrides, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    err = one_line_error(capsys, run_argv(out, tiny_overrides))
    assert f"--out '{out}' is a file" in err
    assert out.read_text() == "not a folder"


def test_out_under_a_file(tiny_overrides, tmp_path, capsys):
    """Also the 'unwritable --out' case: the tests run as root, who may write in any folder
    whatever its mode bits, so a folder whose parent is a file is the unwritable place here."""
    parent = tmp_path / "file"
    parent.write_text("")
    err = one_line_error(capsys, run_argv(parent / "run", tiny_overrides))
    assert f"cannot create run folder '{parent / 'run'}'" in err


def test_out_in_a_read_only_folder(tiny_overrides, tmp_path, capsys, monkeypatch):
    parent = tmp_path / "locked"
    parent.mkdir()
    refuse_writes_below(monkeypatch, parent)
    err = one_line_error(capsys, run_argv(parent / "run", tiny_overrides))
    assert f"cannot create run folder '{parent / 'run'}': Permission denied" in err


def test_empty_config_in_an_existing_run_folder(tiny_overrides, tmp_path, capsys):
    """A run folder whose config.yaml was emptied (a crash of an older version, a user's edit)
    is reported, with what to do, instead of being treated as 'another config'."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.yaml").write_text("")
    err = one_line_error(capsys, run_argv(out, tiny_overrides))
    assert f"'{out / 'config.yaml'}' is empty" in err


def test_duplicate_ids_name_both_lines(tiny_overrides, data_dir, tmp_path, capsys):
    records = [{"id": f"q{i}", **r} for i, r in enumerate(toy_records(40, 0))]
    records[6]["id"] = "q2"  # line 7 repeats the id of line 3
    write_jsonl(data_dir / "train.jsonl", records)
    err = one_line_error(capsys, run_argv(tmp_path / "r", [*tiny_overrides,
                                                           f"task.data_dir={data_dir}"]))
    assert f"{data_dir / 'train.jsonl'}:7: duplicate id 'q2' (first on line 3)" in err


def test_data_dir_that_is_a_file(tiny_overrides, data_dir, tmp_path, capsys):
    path = data_dir / "train.jsonl"
    err = one_line_error(capsys, run_argv(tmp_path / "r", [*tiny_overrides, f"task.data_dir={path}"]))
    assert f"task.data_dir '{path}' is a file" in err


def test_generative_max_length_must_leave_room_for_the_answer(tiny_overrides, tmp_path, capsys):
    """A number task generating up to 64 tokens in a 64-token window has no room for the prompt:
    refused when the config loads, before any model or data."""
    err = one_line_error(capsys, run_argv(tmp_path / "r", [
        *tiny_overrides, "task.answer_type=number", "task.labels=null",
        "task.max_new_tokens=64", "model.max_length=64"]))
    assert "max_new_tokens" in err
    assert not (tmp_path / "r").exists()
