"""The defaults are a runnable setup: built-in SST-2, auto, every key valid as it stands."""

from __future__ import annotations

import json

import pytest

from star.config import StarConfig, load_config
from star.tools.cli import main
from tests.conftest import SHARED_DATA

needs_sst2 = pytest.mark.skipif(not (SHARED_DATA / "SST-2").is_dir(),
                                reason="the shared SST-2 folder (../shared/data/SST-2) is absent")


def test_the_default_config_validates():
    config = load_config(None)
    assert config == StarConfig()
    assert (config.task.name, config.strategy, config.loop.annotator) == ("sst2", "auto", "oracle")


@needs_sst2
def test_the_defaults_run_with_only_the_data_and_sizes_given(tiny_model_dir, tmp_path, capsys):
    """Only what a machine without the hub must say (where the data is) and what keeps the test
    short (the tiny model, a small loop) is set; task, strategy and the rest are the defaults."""
    sets = [f"task.data_dir={SHARED_DATA / 'SST-2'}", "task.train_file=train.tsv",
            "task.test_file=test.tsv", f"model.name={tiny_model_dir}", "model.max_length=96",
            "lora.r=4", "train.epochs=1", "loop.warm_start=8", "loop.step=8", "loop.budget=16",
            "loop.pool_size=40", "loop.test_size=16"]
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *[w for s in sets for w in ("--set", s)]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["task"], results["strategy"]) == ("SST-2", "auto")
    assert [r["n_labeled"] for r in results["rounds"]] == [8, 16]
    assert "AUC" in capsys.readouterr().out
