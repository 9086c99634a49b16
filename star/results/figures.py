"""Figures as PNG files: learning curves (Fig. 5), calibration, selection, the two probes.

Each function takes plain data (no model) and writes one PNG.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from star.active.classes import CURVE_METRICS
from star.active.measures import IN_NATS
from star.active.strategies import display_order, get_strategy, strategy_colors, strategy_of
from star.results.metrics import reliability_bins
from star.results.summary import baseline_levels


def _order(names):
    return sorted(names, key=display_order)


def _title(text: str) -> str:
    """A panel title on as many lines as it needs: a setup's name can be long."""
    return textwrap.fill(text, 48)


def _save(fig, path: Path) -> None:
    """The PNG written whole: into a sibling file first, renamed over `path`."""
    fig.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(path)


def plot_learning_curves(summary: dict[str, dict[str, dict[str, Any]]], path: Path,
                         strategies: Sequence[str] | None = None) -> None:
    """Fig. 5 layout: one panel per setup, the summary's metric (accuracy, or what
    `summarize` was asked for) vs labels, mean line and ± std band.

    With nothing to draw (no run has a test set) the PNG says so, so callers need no case.
    """
    shown = {setup: _order(s for s in summary[setup] if strategies is None or s in strategies)
             for setup in sorted(summary)}
    setups = [setup for setup, names in shown.items() if names]
    colors = strategy_colors(name for names in shown.values() for name in names)
    fig, axes = plt.subplots(1, max(len(setups), 1), figsize=(5 * max(len(setups), 1), 3.8),
                             squeeze=False)
    if not setups:
        axes[0][0].text(0.5, 0.5, "no run with a test set", ha="center", va="center")
        axes[0][0].axis("off")
    for ax, setup in zip(axes[0], setups, strict=False):
        for strategy in shown[setup]:
            metric = summary[setup][strategy]["metric"]
            curve = summary[setup][strategy]["curve"]
            x = np.array(curve["n_labeled"])
            mean, std = np.array(curve[f"{metric}_mean"]), np.array(curve[f"{metric}_std"])
            ax.plot(x, 100 * mean, marker="o", markersize=3, label=strategy,
                    color=colors[strategy])
            ax.fill_between(x, 100 * (mean - std), 100 * (mean + std), alpha=0.12,
                            color=colors[strategy])
        levels = baseline_levels(summary[setup])
        for name, style in (("chance", ":"), ("majority", "--")):
            if levels[name]:
                ax.axhline(100 * float(np.mean(list(levels[name].values()))), color="black",
                           linestyle=style, linewidth=1, alpha=0.6, label=name)
        ax.set_title(_title(setup), fontsize=10)
        ax.set_xlabel("number of labels" + (" (0: the base model, zero-shot)"
                                            if 0 in curve["n_labeled"] else ""))
        ax.set_ylabel(f"{CURVE_METRICS[metric]} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_calibration(rows: dict[tuple[str, str], list[dict[str, Any]]], path: Path,
                     strategies: Sequence[str] | None = None) -> None:
    """ECE and Brier score against labels, one column per setup."""
    rows = {key: value for key, value in rows.items() if strategies is None or key[1] in strategies}
    setups = sorted({setup for setup, _ in rows})
    colors = strategy_colors(strategy for _, strategy in rows)
    fig, axes = plt.subplots(2, len(setups), figsize=(5 * len(setups), 6.5), squeeze=False)
    for col, setup in enumerate(setups):
        for strategy in _order([s for t, s in rows if t == setup]):
            points = rows[(setup, strategy)]
            x = [p["n_labeled"] for p in points]
            axes[0][col].plot(x, [100 * p["ece"] for p in points], marker="o", markersize=3,
                              label=strategy, color=colors[strategy])
            axes[1][col].plot(x, [p["brier"] for p in points], marker="o", markersize=3,
                              label=strategy, color=colors[strategy])
        axes[0][col].set_title(_title(f"{setup}: expected calibration error"), fontsize=10)
        axes[0][col].set_ylabel("ECE (%)")
        axes[1][col].set_title(_title(f"{setup}: Brier score"), fontsize=10)
        axes[1][col].set_ylabel("Brier")
        for ax in axes[:, col]:
            ax.set_xlabel("number of labels")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    _save(fig, path)


def plot_reliability(predictions: dict[str, tuple[list[float], list[bool]]], title: str,
                     path: Path) -> None:
    """Reliability diagrams, one panel per strategy: accuracy per confidence bin vs diagonal."""
    names = _order(predictions)
    colors = strategy_colors(names)
    columns = min(len(names), 6)
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows + 0.3),
                             squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        confidence, correct = predictions[name]
        bins = reliability_bins(confidence, correct)
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=1 / 15,
               align="edge", alpha=0.7, edgecolor="black", label="accuracy",
               color=colors[name])
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=11)
    _save(fig, path)


def plot_selection(rows: list[dict[str, Any]], setup: str, path: Path) -> None:
    """Seed-averaged over the rounds: the pool means of μ_b and μ_f (one panel per measure,
    since ME and PE are on different scales), λ(t) (one line per distinct schedule, named by
    every strategy that follows it) and the overlaps of the top-k sets."""
    mine = [r for r in rows if r["setup"] == setup]
    strategies = _order({r["strategy"] for r in mine})
    colors = strategy_colors(strategies)
    measure_of = {name: get_strategy(strategy_of(name)).measure or "" for name in strategies}
    measures = list(dict.fromkeys(measure_of.values()))
    fig, axes = plt.subplots(1, len(measures) + 2, figsize=(4.7 * (len(measures) + 2), 3.8))
    by_measure = dict(zip(measures, axes, strict=False))
    schedules: dict[tuple[tuple[int, ...], tuple[float, ...]], list[str]] = {}
    for strategy in strategies:
        rounds, mean = _round_means([r for r in mine if r["strategy"] == strategy])
        style = {"marker": "o", "markersize": 3, "color": colors[strategy]}
        ax = by_measure[measure_of[strategy]]
        ax.plot(rounds, mean("base_mean"), linestyle="--", label=f"{strategy} μ_b", **style)
        ax.plot(rounds, mean("full_mean"), linestyle="-", label=f"{strategy} μ_f", **style)
        weights = mean("lambda")
        if not np.isnan(weights).all():  # a `mix: subtract` run has no λ
            schedules.setdefault((tuple(rounds), tuple(weights)), []).append(strategy)
        for key, line, pair in (("overlap_base_full", "-", "μ_b & μ_f"),
                                ("overlap_base_mixed", "--", "μ_b & mixed"),
                                ("overlap_full_mixed", ":", "μ_f & mixed")):
            axes[-1].plot(rounds, [100 * v for v in mean(key)], linestyle=line,
                          label=f"{strategy} {pair}", **style)
    for measure, ax in by_measure.items():
        ax.set_title(_title(f"{setup}: {measure.upper()} of the unlabeled pool"), fontsize=10)
        ax.set_ylabel(f"mean {measure.upper()}" + (" (nats)" if measure in IN_NATS else ""))
    for (rounds, weights), names in schedules.items():
        axes[-2].plot(rounds, weights, marker="o", markersize=3, label=", ".join(names),
                      color=colors[names[0]])
    axes[-2].set_title("λ(t), the base model's weight", fontsize=10)
    axes[-2].set_ylabel("λ(t)")
    axes[-2].set_ylim(0, 1.05)
    axes[-1].set_title("overlap of the top-k sets", fontsize=10)
    axes[-1].set_ylabel("overlap (%)")
    for ax in axes:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, handlelength=3.5)
    _save(fig, path)


def _round_means(rows: list[dict[str, Any]]) -> tuple[list[int], Callable[[str], list[float]]]:
    """The rounds these rows cover, and a function giving a key's mean over seeds per round
    (NaN for a round where no seed has it)."""
    rounds = sorted({r["round"] for r in rows})

    def mean(key: str) -> list[float]:
        return [float(np.mean([r[key] for r in rows if r["round"] == k and r[key] is not None]
                              or [np.nan])) for k in rounds]

    return rounds, mean


def reflected_density(values: Sequence[float], grid: np.ndarray,
                      support: tuple[float, float]) -> np.ndarray:
    """Gaussian kernel density (Silverman's bandwidth) reflected at both ends of `support`, so
    the mass of points near an end stays inside it and the density integrates to one there."""
    values = np.asarray(values, dtype=float)
    low, high = support
    bandwidth = max(1.06 * values.std() * len(values) ** -0.2, 0.02)
    mirrored = np.concatenate([values, 2 * low - values, 2 * high - values])
    density = np.exp(-0.5 * ((grid[:, None] - mirrored[None, :]) / bandwidth) ** 2).sum(1)
    return density / (len(values) * bandwidth * np.sqrt(2 * np.pi))


def plot_confidence_density(confidences: dict[str, list[float]], title: str, path: Path,
                            support: tuple[float, float] = (0.0, 1.0)) -> None:
    """Fig. 2: density of the confidence of wrong predictions, one curve per model.

    The estimate is reflected at the ends of `support` (CF renormalised over n labels lies in
    [1/n, 1]), so no density spills onto confidences that cannot occur.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    grid = np.linspace(*support, 201)
    for name, values in confidences.items():
        if len(values) < 2:
            continue
        density = reflected_density(values, grid, support)
        (line,) = ax.plot(grid, density, label=f"{name} (n={len(values)})")
        ax.fill_between(grid, density, alpha=0.2, color=line.get_color())
    ax.set_xlabel("confidence CF of wrong predictions")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_class_counts(counts: dict[str, dict[str, int]], labels: list[str], title: str,
                      path: Path) -> None:
    """How often each label is the answer, one bar group per label and one bar per source
    (the gold labels, each model's predictions): a model that answers one label everywhere
    (collapsed) shows one bar where the gold labels show several."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(labels) * len(counts) / 2), 3.6))
    width = 0.8 / len(counts)
    for index, (name, values) in enumerate(counts.items()):
        ax.bar(np.arange(len(labels)) + (index - (len(counts) - 1) / 2) * width,
               [values.get(label, 0) for label in labels], width, label=name)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_xlabel("label")
    ax.set_ylabel("examples")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_heatmap(matrix: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    """Fig. 3a: correlation matrix with its values written in."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.6 + 0.6 * len(labels)))
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def plot_scatter(x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str, title: str,
                 path: Path) -> None:
    """Fig. 3b/c: entropy at one iteration against the next, with the identity line."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(x, y, s=6, alpha=0.5)
    low = float(min(np.min(x), np.min(y)))
    high = float(max(np.max(x), np.max(y)))
    ax.plot([low, high], [low, high], "r-", linewidth=1, label="y = x")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
