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
    with pytest.raises(ConfigError, match=r"uncertainty.schedule.*'linear', 'exp', 'cosine', "
                                          r"'constant' or 'evidence'.*'step'"):
        load_config(None, ["uncertainty.schedule=step"])


def test_warm_start_larger_than_budget():
    with pytest.raises(ConfigError, match=r"loop.warm_start \(600\) is larger than loop.budget"):
        load_config(None, ["loop.warm_start=600", "loop.budget=500"])


def test_numeric_labels_become_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task:\n  name: custom\n  labels: [0, 1]\n"
                    "  verbalizer: {0: negative, 1: positive}\n")
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


def test_numbers_follow_yaml_1_2(tmp_path):
    """YAML 1.1 read `010` as octal 8 and `1:30` as 90, so zero-padded class codes silently
    stopped matching the data; `5e-4` was text."""
    path = tmp_path / "c.yaml"
    path.write_text("task:\n  name: custom\n  labels: [01, 010, 1:30, 7, true]\n"
                    "train: {lr: 5e-4}\nloop: {warm_start: 10, budget: 0100}\n")
    config = load_config(path)
    assert config.task.labels == ["01", "010", "1:30", "7", "true"]
    assert config.train.lr == 5e-4 and config.loop.budget == 100


def test_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 3}\nseed: 1\ntrain: {lr: 1.0e-4}\n")
    with pytest.raises(ConfigError, match=r"(?s)key 'train' is given twice.*line 3"):
        load_config(path)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes('task: {title: "café"}\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text"):
        load_config(path)


def test_a_section_override_changes_only_its_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 3, batch_size: 8}\n")
    train = load_config(path, ["train={lr: 1.0e-4}"]).train
    assert (train.epochs, train.batch_size, train.lr) == (3, 8, 1e-4)


def test_custom_task_keys_are_refused_for_a_built_in_task():
    """sst2 with its own prompt or labels would silently keep the paper's."""
    with pytest.raises(ConfigError, match=r"task.labels is only for task.name: custom; the "
                                          r"built-in task 'obqa'"):
        load_config(None, ["task.name=obqa", "task.labels=[a, b]"])
    with pytest.raises(ConfigError, match=r"task.prompt is only for"):
        load_config(None, ["task.prompt='Movie: {text}'"])
    assert load_config(None, ["task.name=gsm8k", "task.max_new_tokens=128"]).task.max_new_tokens == 128


def test_template_mistakes_are_named():
    custom = ["task.name=custom"]
    with pytest.raises(ConfigError, match=r"task.prompt is not a valid template.*\{\{ or \}\}"):
        load_config(None, [*custom, "task.prompt='Text: {text'"])
    with pytest.raises(ConfigError, match=r"placeholder \{\}; each placeholder names a field"):
        load_config(None, [*custom, "task.prompt='Text: {text} {}'"])
    with pytest.raises(ConfigError, match=r"placeholder \{0\}"):
        load_config(None, [*custom, "task.prompt='Text: {0}'"])
    assert load_config(None, [*custom, "task.prompt='{{\"x\": {text}}}'"]).task.prompt == '{{"x": {text}}}'


def test_a_value_yaml_reads_as_a_mapping_says_to_quote_it():
    with pytest.raises(ConfigError, match=r"task.prompt.*quote it"):
        load_config(None, ["task.name=custom", "task.prompt=Review: {text}"])


def test_infinite_numbers_are_refused():
    with pytest.raises(ConfigError, match=r"train.lr.*finite"):
        load_config(None, ["train.lr=.inf"])
