"""Setups: which runs a report may compare.

Two runs are of the same setup when their task and resolved configs agree on everything but
the strategy and the seed. Strategies are compared, and RIPL measured against `random`, only
within a setup: a small model's `random` run is no baseline for a larger model's `me-star`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from star.active.strategies import STRATEGIES, strategy_of, switched_row
from star.config import CHANGES_NO_NUMBER, EARLIER, default_keys, saved_keys, set_dotted
from star.errors import ConfigError, DataError

VARIED = ("strategy", "seed")
"""Config keys that tell runs of one setup apart (the rows and repetitions of a table)."""
UNSET = object()
"""A key one setup's config has and another's lacks (a run made by an older version)."""
SHORT = 24
"""Longest value shown in a setup's name; longer ones are cut."""
MOST_KEYS = 3
"""Most keys besides the model a setup's name shows; summary.json keeps them all."""
PICKING_KEYS = ("guard.select_with",)
"""Keys that only say which model scores the pool for the next batch: immaterial to a strategy
that picks without the model (random, typiclust), so its runs join the runs that do."""
ONE_VALUE = "a switch is a key of one plain value (a word, a number, true or false)"
"""Why `--switches` refuses lists and mappings: a row's name holds one value."""


def check_switches(keys: list[str]) -> None:
    """A `ConfigError` naming a key that is not a config key, is `strategy`/`seed` (already
    rows and repetitions), or holds a list or a mapping (a row's name holds one plain value)."""
    known = default_keys()
    for key in keys:
        if key not in known or key in VARIED or key in CHANGES_NO_NUMBER:
            raise ConfigError(f"--switches '{key}' is not a config key of a setup (e.g. "
                              "train.balance, uncertainty.schedule, selection.shortlist; "
                              "strategy, seed and keys that change no number are not)")
        if isinstance(known[key], list | dict):
            raise ConfigError(f"--switches '{key}' is a list; {ONE_VALUE}")


def _plain(value: Any) -> str:
    """A value as written in YAML (no quotes around a string), never shortened."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def fold_switches(runs: list[dict[str, Any]], keys: list[str]) -> None:
    """Compare config keys as if they were strategies. For each of `keys`, a run whose value
    differs from STAR's default is named `strategy key=value` (`strategy_of` reads the strategy
    back), and the key moves from its config to that name: so `random` with
    `train.balance=classes` becomes the row `random train.balance=classes` of its setup instead
    of a setup of its own. Every row is measured against plain `random` (RIPL, labels saved,
    the paired comparisons); name `me train.balance=classes:random train.balance=classes` in
    `--pairs` to compare within the switched recipe. A run whose value is a mapping (a key
    whose default is null, such as `task.verbalizer`) is a `ConfigError`: one row name could
    not tell two of them apart."""
    defaults = default_keys()
    for run in runs:
        config = copy.deepcopy(run.get("config") or {})
        switched = []
        for key in keys:
            *parents, leaf = key.split(".")
            node = config
            for parent in parents:
                node = node.get(parent) or {}
            value = node.pop(leaf, EARLIER.get(key, defaults[key]))
            if isinstance(value, list | dict):
                raise ConfigError(f"--switches '{key}' is set to {_plain(value)} in "
                                  f"{run.get('path', 'a run')}; {ONE_VALUE}")
            if value != defaults[key]:
                switched.append(f"{key}={_plain(value)}")
        run["strategy"] = switched_row(run["strategy"], switched)
        run["config"] = config


def setup_config(run: dict[str, Any]) -> dict[str, Any]:
    """The run's resolved config as dotted keys, without strategy and seed, nor the keys that
    change no number (`CHANGES_NO_NUMBER`). A key added to STAR since the run was made takes
    the value that did what the run did (`saved_keys`): an older run and a new one with the
    same settings are one setup."""
    resolved = saved_keys(run.get("config") or {})
    return {key: value for key, value in resolved.items()
            if key not in VARIED and key not in CHANGES_NO_NUMBER}


def picks_with_model(strategy: str) -> bool:
    """`Strategy.reads_model` of a report row's strategy; an unknown name, from a run made by
    another version, counts as reading the model."""
    known = STRATEGIES.get(strategy_of(strategy))
    return known is None or known.reads_model


def settle_picking_keys(runs: list[dict[str, Any]]) -> None:
    """A run of a strategy that picks without the model takes, for `PICKING_KEYS`, the values
    that the runs of its task picking with the model hold where all other keys agree, if they
    hold one set of values: a `random` run saved before `guard.select_with` (read as `handed`)
    is then the baseline of new runs under the default `trained`. Where those runs hold
    several sets, or there are none, the run keeps its own (and groups by it)."""
    keys, picking = [], []
    for run in runs:
        config = setup_config(run)
        keys.append((run["task"], json.dumps({key: value for key, value in config.items()
                                              if key not in PICKING_KEYS}, sort_keys=True)))
        picking.append(json.dumps([config[key] for key in PICKING_KEYS]))
    held: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run, rest, values in zip(runs, keys, picking, strict=True):
        if picks_with_model(run["strategy"]):
            held[rest].add(values)
    for run, rest in zip(runs, keys, strict=True):
        if not picks_with_model(run["strategy"]) and len(held[rest]) == 1:
            config = copy.deepcopy(run.get("config") or {})
            for key, value in zip(PICKING_KEYS, json.loads(next(iter(held[rest]))), strict=True):
                set_dotted(config, key, value)
            run["config"] = config


def setup_key(run: dict[str, Any]) -> tuple[str, str]:
    """Equal for two runs exactly when they are of the same setup."""
    return run["task"], json.dumps(setup_config(run), sort_keys=True)


def _show(value: Any, short: bool) -> str:
    if value is UNSET:
        return "unset"
    if not short:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = _plain(value)
    if isinstance(value, str) and "/" in value and not any(c.isspace() for c in value):
        text = Path(value).name or value  # a local folder or a hub id: its last part
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def _names(task: str, configs: dict[tuple[str, str], dict[str, Any]],
           varying: list[str]) -> dict[tuple[str, str], str]:
    """The task alone for its only setup; else the task, the model and the keys that vary
    (the first `MOST_KEYS`, values shortened, unless that makes two names alike)."""
    if len(configs) == 1:
        return dict.fromkeys(configs, task)
    keys = ["model.name", *[key for key in varying if key != "model.name"]]

    def join(short: bool) -> dict[tuple[str, str], str]:
        shown = keys[: 1 + MOST_KEYS] if short else keys
        more = [f"+{len(keys) - len(shown)} more keys"] if len(shown) < len(keys) else []
        return {setup: " · ".join([task, *(f"{key}={_show(config.get(key, UNSET), short)}"
                                          for key in shown), *more])
                for setup, config in configs.items()}

    names = join(short=True)
    if len(set(names.values())) < len(names):  # alike once shortened: say everything
        names = join(short=False)
    return names


def name_setups(runs: list[dict[str, Any]]) -> None:
    """Give each run its setup's display name (`setup`) and the config keys that set that setup
    apart from the other setups of its task, with their full values (`setup_keys`)."""
    by_task: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for run in runs:
        by_task[run["task"]][setup_key(run)] = setup_config(run)
    names: dict[tuple[str, str], str] = {}
    differing: dict[tuple[str, str], dict[str, Any]] = {}
    for task, configs in by_task.items():
        keys = sorted({key for config in configs.values() for key in config})
        varying = [key for key in keys if len({_show(config.get(key, UNSET), short=False)
                                               for config in configs.values()}) > 1]
        names.update(_names(task, configs, varying))
        for setup, config in configs.items():
            differing[setup] = {key: config.get(key) for key in varying}
    for run in runs:
        run["setup"] = names[setup_key(run)]
        run["setup_keys"] = differing[setup_key(run)]


def refuse_duplicates(runs: list[dict[str, Any]]) -> None:
    """Two runs of one setup, strategy and seed would make the report pick one silently."""
    seen: dict[tuple[tuple[str, str], str, int], dict[str, Any]] = {}
    for run in runs:
        key = (setup_key(run), run["strategy"], run["seed"])
        if key in seen:
            raise DataError(f"'{seen[key]['path']}' and '{run['path']}' are the same run "
                            f"({run['setup']}, {run['strategy']}, seed {run['seed']}); "
                            "keep one of them below the runs folder")
        seen[key] = run


STEM = 96
"""Longest file stem a setup's name gives; file systems stop at 255 bytes a name."""


def file_stem(setup: str) -> str:
    """A setup's name as part of a file name: `SST-2 · loop.budget=80` -> `SST-2_loop.budget=80`;
    a name past `STEM` characters is cut and told apart by a hash of the whole."""
    stem = re.sub(r"[^\w.=+-]+", "_", setup).strip("_")
    if len(stem) <= STEM:
        return stem
    return f"{stem[: STEM - 11]}_{hashlib.sha1(stem.encode()).hexdigest()[:10]}"
