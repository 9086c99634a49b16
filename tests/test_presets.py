"""Every preset loads, names the command that runs it, and keeps the paper's numbers."""

from pathlib import Path

import pytest

from star.config import load_config

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_loads_and_shows_its_command(path):
    config = load_config(path)
    assert path.read_text().startswith("# ")
    assert "star compare configs/" + path.name in path.read_text()
    assert config.loop.warm_start <= config.loop.budget


def test_paper_presets_match_the_paper():
    gsm8k = load_config(Path(PRESETS[0]).parent / "paper-gsm8k.yaml")
    assert (gsm8k.loop.warm_start, gsm8k.loop.step, gsm8k.loop.budget) == (500, 500, 5000)
    assert (gsm8k.train.batch_size, gsm8k.train.lr, gsm8k.train.epochs) == (8, 1.5e-4, 3)
    obqa = load_config(Path(PRESETS[0]).parent / "paper-obqa.yaml")
    assert (obqa.loop.warm_start, obqa.loop.step, obqa.loop.budget) == (200, 200, 2000)
    assert (obqa.train.batch_size, obqa.train.lr, obqa.train.epochs) == (32, 3e-5, 15)
