"""Typed config: overrides, validation messages, the resolved copy."""

import pytest

from star.config import StarConfig, flatten, load_config, parse_override
from star.errors import ConfigError


def test_defaults_are_the_papers():
    config = StarConfig()
    assert (config.lora.r, config.lora.alpha, config.lora.dropout) == (64, 16, 0.1)
    assert config.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                          "up_proj", "down_proj"]
    assert config.train.weight_decay_b == 0.5 and config.uncertainty.mc_passes == 3


def test_overrides_are_typed_yaml():
    assert parse_override("loop.budget=300") == ("loop.budget", 300)
    assert parse_override("task.labels=[yes, no, on]") == ("task.labels", ["yes", "no", "on"])
    config = load_config(None, ["loop.warm_start=100", "loop.budget=300", "train.lr=1e-4",
                                "loop.pool_size=null"])
    assert config.loop.budget == 300 and config.train.lr == 1e-4 and config.loop.pool_size is None


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'loop.budgett'; allowed here: "
                                          r"warm_start, step, budget, pool_size, test_size"):
        load_config(None, ["loop.budgett=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'lopo'; allowed here: strategy"):
        load_config(None, ["lopo.budget=3"])


def test_bad_choice_names_key_and_allowed_values():
    with pytest.raises(ConfigError, match=r"uncertainty.schedule.*'linear', 'exp', 'cosine' or "
                                          r"'constant'.*'step'"):
        load_config(None, ["uncertainty.schedule=step"])


def test_warm_start_larger_than_budget():
    with pytest.raises(ConfigError, match=r"loop.warm_start \(600\) is larger than loop.budget"):
        load_config(None, ["loop.warm_start=600", "loop.budget=500"])


def test_numeric_labels_become_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task:\n  labels: [0, 1]\n  verbalizer: {0: negative, 1: positive}\n")
    config = load_config(path)
    assert config.task.labels == ["0", "1"] and config.task.verbalizer == {"0": "negative",
                                                                             "1": "positive"}


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def test_a_custom_task_is_titled_by_its_config_file(tmp_path):
    """A data folder named `data` once headed tables "data AUC"; the config file names the
    task now, unless task.title does (a built-in keeps its own title)."""
    (tmp_path / "movie-reviews.yaml").write_text("task: {name: custom, data_dir: data}\n")
    assert load_config(tmp_path / "movie-reviews.yaml").task.title == "movie-reviews"
    assert load_config(tmp_path / "movie-reviews.yaml", ["task.title=Reviews"]).task.title == "Reviews"
    assert load_config(None, ["task.name=custom"]).task.title is None  # then the folder's name
    (tmp_path / "obqa.yaml").write_text("task: {name: obqa}\n")
    assert load_config(tmp_path / "obqa.yaml").task.title is None  # the built-in's "OBQA"
