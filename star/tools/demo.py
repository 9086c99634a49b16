"""`star demo`: random against the default strategy on a topic task the demo writes itself,
fully offline.

The task: short generated sentences about one of four topics (music, food, sports, weather),
answered with the topic's name. Zero-shot, SmolLM2-135M answers near chance (24 % measured);
LoRA on a few dozen labels brings it above 90 %, so the curve rises inside a small budget.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from star.config import load_config
from star.tools.compare import compare

TOPICS: dict[str, dict[str, list[str]]] = {
    "food": {
        "subject": ["the soup", "my sandwich", "the pasta", "her curry", "the bread", "this cake",
                    "the salad", "our pizza", "the noodles", "his omelette"],
        "detail": ["tasted too salty", "was baked this morning", "needs more pepper",
                   "came with fresh herbs", "was served cold", "smelled of garlic",
                   "was cooked slowly", "had a crispy crust"],
    },
    "weather": {
        "subject": ["the storm", "the wind", "this morning's fog", "the rain", "the heat",
                    "the snow", "a cold front", "the thunder", "the clouds", "the frost"],
        "detail": ["rolled in from the coast", "lasted all night", "closed the mountain roads",
                   "is expected by noon", "broke a local record", "cleared up by evening",
                   "kept everyone indoors", "moved east quickly"],
    },
    "sports": {
        "subject": ["the striker", "our goalkeeper", "the home team", "the coach", "the runner",
                    "the tennis champion", "the rookie", "the referee", "the captain",
                    "the cyclist"],
        "detail": ["scored in the final minute", "won the match easily", "trained twice a day",
                   "was sent off", "broke the national record", "lost in the semifinal",
                   "signed a new contract", "celebrated the victory"],
    },
    "music": {
        "subject": ["the guitarist", "the orchestra", "her new album", "the drummer", "the choir",
                    "the pianist", "that song", "the band", "the violinist", "the singer"],
        "detail": ["played a long solo", "topped the charts", "tuned up before the show",
                   "recorded in one take", "sold out the concert", "switched to a minor key",
                   "rehearsed all week", "closed with an encore"],
    },
}
OPENERS = ["", "Yesterday ", "I heard that ", "Apparently ", "Everyone agreed that ",
           "According to the news, "]
LETTERS = ["A", "B", "C", "D"]
KEY = {"A": "music", "B": "food", "C": "sports", "D": "weather"}
PROMPT = "Sentence: {sentence}\nIs this sentence about music, food, sports or weather? Answer:"


def make_records(n: int, seed: int, unseen: frozenset[str] = frozenset()) -> list[dict[str, str]]:
    """`n` sentences with their topic letter, balanced over topics, deterministic in `seed`;
    none of them in `unseen` (the test set leaves out every sentence of the pool's file)."""
    rng = random.Random(seed)
    letters = [LETTERS[i % 4] for i in range(n)]
    rng.shuffle(letters)
    records = []
    for index, letter in enumerate(letters):
        sentence = _sentence(rng, TOPICS[KEY[letter]])
        while sentence in unseen:
            sentence = _sentence(rng, TOPICS[KEY[letter]])
        records.append({"id": f"{seed}-{index}", "sentence": sentence, "answer": letter})
    return records


def _sentence(rng: random.Random, parts: dict[str, list[str]]) -> str:
    opener = rng.choice(OPENERS)
    subject = rng.choice(parts["subject"])
    sentence = f"{opener}{subject} {rng.choice(parts['detail'])}."
    return sentence[0].upper() + sentence[1:]


def write_demo_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train = make_records(600, seed=1)
    test = make_records(200, seed=2, unseen=frozenset(r["sentence"] for r in train))
    for name, rows in (("train.jsonl", train), ("test.jsonl", test)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


DEMO_SETTINGS = [
    "task.name=custom", "task.answer_type=choice", "task.labels=[A, B, C, D]",
    "task.answer_field=answer", "task.verbalizer={A: music, B: food, C: sports, D: weather}",
    "loop.warm_start=4", "loop.step=4", "loop.budget=28", "loop.pool_size=200",
    "loop.test_size=120", "train.epochs=3", "train.batch_size=8", "train.lr=1e-3",
]


def run_demo(out: Path, overrides: list[str]) -> None:
    data = write_demo_data(out / "topics")
    settings = [*DEMO_SETTINGS, f"task.data_dir={data}", f"task.prompt={json.dumps(PROMPT)}",
                *overrides]
    demo = load_config(None, settings)
    default, arms = demo.strategy, ", ".join(demo.bandit.arms)
    table = compare(None, settings, ["random", default], [0], out=out)
    print(table)
    print(f"One seed per strategy: each number is one run, with no spread and no test, so the "
          f"demo shows the tool working, not which strategy is better. The evidence so far "
          f"(docs/label-savings, 10 paired seeds): no strategy has been shown to save labels "
          f"against random at random's best recipe (train.balance: classes where a class is "
          f"rare). The default, {default}, hedges: a bandit over {arms}, not shown below "
          f"random in any setting measured, where me and "
          f"me-star, the paper's method, ended below random on TREC-6, whose base model is at "
          f"chance; random was as good everywhere and costs less to run. On this demo's cold "
          f"start the prompt guard hands out the base model until two topics have "
          f"guard.min_per_class labels and the adapter holds out at least as well as the "
          f"prompt on them, while the adapter trained on the labels picks the next batch "
          f"(guard.select_with: trained). For a comparison of your own: star compare "
          f"CONFIG --seeds 0,1,2,3,4,5,6,7,8,9 (the table then gives labels saved and paired "
          f"intervals and p-values against random).")
    print(f"learning curves: {out / 'learning_curves.png'}")
