"""Training a round again when its adapter does not fit its own labels (`train.retries`).

A round's training can fail outright: on SST-2 with 10 % negatives, about one run in six had
a round whose adapter answered nearly everything with one class (51 % on a balanced test set
where its neighbours scored 75-80 %; docs/label-savings, section 2.11). Such a round is the
training draw's doing, not its labels': the same labels and initial adapter under other data
orders and dropout masks trained healthy adapters, and the collapsed draw replays exactly. It
also shows without the test set: that adapter got 1 of its 10 negative training labels right.

So after training, the round's adapter answers its own labels, and so does the base model
(adapter off): both scored as the prompt guard scores, balanced accuracy for a choice task
(plain accuracy for a generative one; `prompt_guard.held_out_score`). An adapter that fits the
labels it trained on worse than the untrained model does has not learned them, and the round
trains again from the same start under the next training draw, up to `train.retries` more
times; the first draw that fits is kept. If none does, the round hands out the base model, as
the prompt guard does where its folds say the adapter is worse (`handed_out`): the adapter's
score on labels it trained on flatters it, the base model's is held out, and still the base
model scores higher. The first draw is the round's usual one, so a run where every first draw
fits is the run without retries, number for number. Nothing here reads the test set.

On the skewed pool's rounds of 48 and 64 labels every draw could collapse (fit 50 % against
the base model's 92-94 %, section 2.12): there the retries find nothing, and the base model,
71.7 % on the test set, is what the round has to give.

A partial failure passes: an adapter at 63 % on the test set fitted its labels at 76.6 %,
near a healthy draw's 78.6 %, so its own labels cannot tell it apart (section 2.11).

A draw must also beat chance on its labels (`train.beat_chance`): balanced accuracy over the k
classes they hold is 1/k for an adapter that answers one class to everything, however its labels
fall. On a pool where negatives are 2 %, a run's first 48 random labels were all positive, and
its adapter answered "positive" to every test sentence (50.9 % against the prompt's 71.2 %):
on labels of one class such an adapter scores a perfect 1.0, which is chance there. At 64 labels
the run had one negative, which the base model got wrong: the base model's balanced accuracy on
the labels fell to 44 %, under chance, and the collapsed adapter's 50 % passed it. Beating
chance too, neither passes. Labels of one class (chance 1) train one draw, as no draw can beat
it (scikit-learn's classifiers refuse a single class), and hand out the base model, which still
knows the other classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from star.active.prompt_guard import BASE, TUNED

State = TypeVar("State")


def fits(tuned: float, base: float, chance: float | None = None) -> bool:
    """Whether an adapter fits its training labels: at least as well as the base model does on
    the same labels (a tie keeps it, as the prompt guard keeps a tie), and above `chance` where
    one is given (at chance it tells no class apart)."""
    return tuned >= base and (chance is None or tuned > chance)


def best_draw(scores: list[float]) -> int:
    """The draw that fits its labels best; the earliest among equals."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass(frozen=True)
class FitCheck:
    """One round's check, as results.json keeps it: the base model's score on the labels, each
    draw's training seed and score, which draw the round kept, and the chance level a draw had
    to beat (None: no such bar, for a generative task, under `train.beat_chance: false` and in
    a record from before the key)."""

    metric: str
    base: float
    seeds: list[int]
    draws: list[float]
    kept: int
    chance: float | None = None

    @property
    def retried(self) -> bool:
        return len(self.draws) > 1

    @property
    def fitted(self) -> bool:
        """Whether the draw kept fits its labels (else the base model is handed out)."""
        return kept_fits(self.to_dict())

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Refit(Generic[State]):
    """How a round trains one draw and puts a kept one back: `train(seed)` trains from the
    round's start under the training seed `seed` and returns the adapter's score on its labels;
    `snapshot()` copies the adapter as it stands and `restore(state)` puts a copy back."""

    train: Callable[[int], float]
    snapshot: Callable[[], State]
    restore: Callable[[State], None]


def train_until_fit(refit: Refit[State], seeds: list[int], base: float, *, metric: str,
                    chance: float | None = None) -> FitCheck:
    """Train under `seeds[0]`, then under each next seed while no draw so far fits (`fits`), at
    most `len(seeds)` draws, one where nothing can beat `chance` (1: labels of one class);
    leave the adapter of the draw kept in place (`best_draw` of the draws, which is the last
    when it fits)."""
    if chance is not None and chance >= 1:
        seeds = seeds[:1]
    scores: list[float] = []
    states: list[State] = []
    for seed in seeds:
        scores.append(refit.train(seed))
        if fits(scores[-1], base, chance):
            break
        if len(scores) < len(seeds):  # a later draw will replace it: keep a copy to go back to
            states.append(refit.snapshot())
    kept = best_draw(scores)
    if kept != len(scores) - 1:
        refit.restore(states[kept])
    return FitCheck(metric, base, seeds[: len(scores)], scores, kept, chance)


def kept_fits(fit: Mapping[str, Any]) -> bool:
    """Whether a fit check's record (`FitCheck.to_dict`) kept a draw that fits its labels."""
    return fits(fit["draws"][fit["kept"]], fit["base"], fit.get("chance"))


def of_one_class(fit: Mapping[str, Any]) -> bool:
    """Whether a fit check's record had labels of one class to beat chance on (chance 1: no
    draw could, so the base model was handed out)."""
    return fit.get("chance") == 1


def handed_out(guard: Mapping[str, Any] | None, fit: Mapping[str, Any] | None) -> str | None:
    """What a round handed out, from its records of the prompt guard's check and of the fit
    check (`GuardCheck.to_dict`, `FitCheck.to_dict`; None where one did not run): BASE where
    the guard chose the base model or no draw fitted its labels, TUNED where either checked and
    kept the adapter, None where neither checked."""
    if guard is None and fit is None:
        return None
    unfitted = fit is not None and not kept_fits(fit)
    return BASE if unfitted or (guard is not None and guard["chosen"] == BASE) else TUNED
