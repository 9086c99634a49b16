"""What a resume must refuse: other inputs (model files, data, hardware, dtype), a run folder
without its config; the saved config's title; the folder's shared lock that keeps `star next`
from reading the journal between a page's check and its write; and `star compare`'s own
strategies and seeds."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from star.active import runfolder
from star.active.journal import Journal
from star.active.loop import check_same_config, run_experiment
from star.active.runfolder import RunFolder
from star.config import EARLIER, StarConfig, as_begun, default_keys, load_config, saved_keys
from star.errors import ConfigError
from star.tools import compare as compare_module
from star.tools.labels import page_server
from tests.conftest import toy_records, write_jsonl

INPUT_KEYS = {"model files", "pool examples", "test examples", "hardware", "cpu", "dtype"}


def run_config(overrides: list[str], *extra: str) -> StarConfig:
    """A one-round random run on the tiny model: the guards, not the rounds, are tested."""
    return load_config(None, [*overrides, "strategy=random", "seed=0", "loop.budget=8", *extra])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The toy task with explicit ids, in a folder this test may edit: an edited prompt keeps
    its id, so only the content hash can tell."""
    folder = tmp_path / "toy"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"id": f"t{n}", **r} for n, r in enumerate(toy_records(80, 0))])
    write_jsonl(folder / "test.jsonl", [{"id": f"s{n}", **r} for n, r in enumerate(toy_records(20, 1))])
    return folder


@pytest.fixture
def config(tiny_overrides: list[str], data_dir: Path) -> StarConfig:
    return run_config(tiny_overrides, f"task.data_dir={data_dir}")


@pytest.fixture
def finished(config: StarConfig, tmp_path: Path) -> Path:
    """A finished run folder of `config`."""
    out = tmp_path / "run"
    run_experiment(config, out)
    return out


def read_results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def test_a_resume_on_an_edited_pool_file_is_refused(finished: Path, config: StarConfig,
                                                    data_dir: Path) -> None:
    """An unchanged resume goes on (the run records its inputs); one prompt of the pool edited
    under the same id is refused, since the rounds would not replay on it."""
    before = read_results(finished)
    assert set(before["inputs"]) == INPUT_KEYS
    assert run_experiment(config, finished) == before
    picked = before["rounds"][0]["selected_ids"][0]  # surely in the pool
    train = data_dir / "train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    for row in rows:
        if row["id"] == picked:
            row["question"] = "stone " + row["question"]
    write_jsonl(train, rows)
    with pytest.raises(ConfigError, match="started with other pool examples"):
        run_experiment(config, finished)
    assert read_results(finished) == before


def test_a_finished_run_reopens_without_its_adapters(finished: Path, config: StarConfig) -> None:
    """A finished run's records (config, results, scores, predictions) are all a reopening
    needs: the study keeps them in git without the adapters and resumes on a new machine."""
    before = read_results(finished)
    adapters = sorted(finished.glob("rounds/*/adapter"))
    assert adapters
    for folder in adapters:
        shutil.rmtree(folder)
    assert run_experiment(config, finished) == before
    assert read_results(finished) == before


@pytest.mark.parametrize(("key", "then"), [("dtype", "bfloat16"), ("hardware", "cuda NVIDIA A100"),
                                           ("cpu", "Intel(R) Xeon(R), AVX512, amx_bf16, avx512_bf16")])
def test_a_resume_on_other_hardware_or_dtype_is_refused(finished: Path, config: StarConfig,
                                                        key: str, then: str) -> None:
    """A run started on a GPU in bf16 does not go on on this CPU in fp32: its rounds would
    not replay."""
    results = read_results(finished)
    results["inputs"][key] = then
    (finished / "results.json").write_text(json.dumps(results))
    with pytest.raises(ConfigError, match=re.escape(f"started with other {key} ({then} then, ")):
        run_experiment(config, finished)


def test_a_run_recorded_before_its_cpu_was_goes_on(finished: Path, config: StarConfig) -> None:
    """A record from before `inputs` named the CPU cannot say where it ran: it goes on, and its
    record is left as it was (writing this CPU in would claim it ran here)."""
    results = read_results(finished)
    del results["inputs"]["cpu"]
    (finished / "results.json").write_text(json.dumps(results))
    assert run_experiment(config, finished) == results
    assert "cpu" not in read_results(finished)["inputs"]


def test_the_cpu_is_named_with_its_kernels_and_bf16_units(monkeypatch) -> None:
    """The model name, torch's kernel level and the bf16 units, from /proc/cpuinfo's first
    model name and flags: what tells a Xeon with AMX from an EPYC with AVX-512 bf16 only."""
    import star.model.loading as loading

    monkeypatch.setattr(loading, "cpu_info", lambda: ("AMD EPYC", frozenset({"avx2",
                                                                             "avx512_bf16"})))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert loading.cpu_identity() == "AMD EPYC, AVX512, avx512_bf16"
    assert loading.cpu_has_fast_bf16()
    monkeypatch.setattr(loading, "cpu_info", lambda: ("Xeon", frozenset({"amx_bf16",
                                                                         "avx512_bf16"})))
    assert loading.cpu_identity() == "Xeon, AVX512, amx_bf16, avx512_bf16"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert loading.cpu_identity() == "Xeon, AVX2, amx_bf16, avx512_bf16"
    assert not loading.cpu_has_fast_bf16()  # torch dispatches to its AVX2 kernels


def test_a_run_folder_without_its_config_is_refused(finished: Path, config: StarConfig) -> None:
    """With config.yaml gone nothing says which config the rounds ran under: the folder is
    refused, not adopted by whatever config comes next, and nothing in it is rewritten."""
    (finished / "config.yaml").unlink()
    results = (finished / "results.json").read_bytes()
    with pytest.raises(ConfigError, match=re.escape("holds a run but no config.yaml")):
        run_experiment(config, finished)
    assert not (finished / "config.yaml").exists()
    assert (finished / "results.json").read_bytes() == results


def test_the_saved_config_keeps_the_resolved_title(finished: Path, config: StarConfig) -> None:
    """A custom task started without a config file is titled by its data folder; its run's
    config.yaml must say so, or a reload would title it by that file's name, "config"."""
    assert config.task.title is None
    title = read_results(finished)["task"]
    assert title == "toy"
    assert load_config(finished / "config.yaml").task.title == title


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.create()
    return folder


def saved_without(config: StarConfig, key: str) -> dict[str, Any]:
    """`config` as a version of STAR before `key` (section.leaf) would have saved it."""
    saved = config.model_dump()
    section, leaf = key.split(".")
    del saved[section][leaf]
    return saved


def test_a_run_begun_before_a_key_goes_on_as_it_began(folder: RunFolder) -> None:
    """A run saved before `guard.select_with` selected with the model handed out: resumed by
    a config at the default (as `star next` reads the saved one), it takes `handed`; a run
    saved with the key keeps what it saved, and does not resume under the other value."""
    old = saved_without(StarConfig(), "guard.select_with")
    resumed, taken = as_begun(StarConfig(), old)
    assert (resumed.guard.select_with, taken) == ("handed", ["guard.select_with"])
    assert as_begun(StarConfig(guard={"select_with": "handed"}), old)[1] == []
    folder.write_config(yaml.safe_dump(old))
    check_same_config(folder, resumed)
    new = StarConfig().model_dump()
    assert as_begun(StarConfig(), new) == (StarConfig(), [])
    folder.write_config(yaml.safe_dump(StarConfig(guard={"select_with": "handed"}).model_dump()))
    with pytest.raises(ConfigError, match=r"differs in: guard.select_with\)"):
        check_same_config(folder, StarConfig())


def test_a_saved_config_reads_a_key_added_since_as_what_the_run_did() -> None:
    """`EARLIER`'s value where a key's default changed what runs do; else the default."""
    old = saved_without(StarConfig(), "guard.select_with")
    del old["selection"]["shortlist"]
    keys = saved_keys(old)
    assert keys["guard.select_with"] == "handed" == EARLIER["guard.select_with"]
    assert keys["selection.shortlist"] == default_keys()["selection.shortlist"]
    assert saved_keys(StarConfig().model_dump())["guard.select_with"] == "trained"
    before_reach = saved_without(StarConfig(), "guard.reach")
    del before_reach["guard"]["short_class"]
    keys = saved_keys(before_reach)  # the guard as it was: reach in labels, short class -> base
    assert (keys["guard.reach"], keys["guard.short_class"]) == ("labels", "base")
    assert (default_keys()["guard.reach"], default_keys()["guard.short_class"]) == \
        ("rarest_class", "score_the_rest")


def test_lock_waits_for_a_shared_holder_that_lets_go(folder: RunFolder) -> None:
    """A page holds the folder shared for a moment per answer: `star next` waits that out."""
    holding, released = threading.Event(), []

    def page() -> None:
        with folder.shared() as free:
            assert free
            holding.set()
            time.sleep(0.3)
            released.append(time.monotonic())

    thread = threading.Thread(target=page)
    thread.start()
    assert holding.wait(5)
    with folder.lock():
        taken = time.monotonic()
    thread.join()
    assert released and taken >= released[0]


def test_lock_refuses_a_shared_holder_beyond_its_patience(folder: RunFolder,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder held longer than the patience is refused with one line, not waited on forever;
    the line names the page, not the pid an earlier `star run` left in .lock."""
    monkeypatch.setattr(runfolder, "LOCK_PATIENCE", 0.1)
    with folder.shared() as free:
        assert free
        with pytest.raises(ConfigError, match="is in use by a labeling page"), folder.lock():
            pass


def test_shared_says_busy_while_the_lock_is_held(folder: RunFolder) -> None:
    with folder.lock(), folder.shared() as free:
        assert not free


@pytest.fixture
def waiting_run(tiny_overrides: list[str], tmp_path: Path) -> Path:
    """A run whose round 0 waits for people's labels."""
    out = tmp_path / "people"
    run_experiment(run_config(tiny_overrides, "loop.annotator=people"), out)
    return out


def test_a_page_write_holds_the_run_shared(waiting_run: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the page's check that no `star next` holds the run and its journal line, the
    run stays held shared: a `star next` starting then cannot read the journal without it."""
    monkeypatch.setattr(runfolder, "LOCK_PATIENCE", 0.0)
    refused: list[bool] = []
    append = Journal.append

    def append_while_star_next_tries(journal: Journal, answers: list[Any]) -> None:
        try:
            with RunFolder(waiting_run).lock():
                refused.append(False)
        except ConfigError:
            refused.append(True)
        append(journal, answers)

    monkeypatch.setattr(Journal, "append", append_while_star_next_tries)
    page = page_server(waiting_run, "bob")
    try:
        example_id = page.batch.ids[0]
        page.answer(example_id, page.batch.labels[0])
        assert page.undo() == example_id
    finally:
        page.shutdown()
    assert refused == [True, True]
    assert len(RunFolder(waiting_run).journal.answers()) == 2


@pytest.fixture
def no_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`star compare` whose runs would fail the test: refusals must come before any model."""
    def run(*_: Any) -> None:
        pytest.fail("compare started a run")

    monkeypatch.setattr(compare_module, "run_experiment", run)
    yield


@pytest.mark.usefixtures("no_runs")
@pytest.mark.parametrize(("overrides", "message"), [
    (["seed=3"], "a comparison takes its strategies and seeds from its own options"),
    (["strategy=me"], "a comparison takes its strategies and seeds from its own options"),
    (["loop.annotator=people"], "star compare simulates annotators"),
])
def test_compare_refuses_what_it_cannot_honour(tmp_path: Path, overrides: list[str],
                                               message: str) -> None:
    """`--set seed=3` would be silently replaced by --seeds, and people cannot answer a
    comparison's batches: both are refused before any model loads."""
    with pytest.raises(ConfigError, match=message):
        compare_module.compare(None, overrides, ["random"], [0], tmp_path / "cmp")


def test_a_run_saved_with_every_default_arm_resumes_and_groups_as_before(folder: RunFolder):
    """Before the default arms depended on the task, every config saved all four, also a
    generative task's run of another strategy, which never read them: such a run still resumes,
    and shares a setup with a new run of its settings, auto included."""
    from star.results.setups import setup_key

    settings = ["strategy=me", "task.name=gsm8k"]
    old = load_config(None, settings).model_dump()
    old["bandit"]["arms"] = ["random", "me-star", "margin", "typiclust"]
    folder.write_config(yaml.safe_dump(old))
    check_same_config(folder, load_config(None, settings))
    new_auto = load_config(None, ["strategy=auto", "task.name=gsm8k"]).model_dump()
    assert setup_key({"task": "GSM8K", "config": old}) == \
        setup_key({"task": "GSM8K", "config": new_auto})
    chosen = load_config(None, [*settings, "bandit.arms=[random, margin]"])  # kept as chosen
    folder.write_config(yaml.safe_dump(chosen.model_dump()))
    with pytest.raises(ConfigError, match=r"differs in: bandit.arms\)"):
        check_same_config(folder, load_config(None, settings))
