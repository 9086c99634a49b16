"""The `star` command: run, compare, report, probe, bench, demo.

User errors (bad config, data, names) print one line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from star.config import StarConfig, load_config
from star.errors import ConfigError, StarError
from star.progress import log, progress


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise ConfigError(f"--seeds '{text}' is not a comma-separated list of integers") from None


def _config(args: argparse.Namespace, **fixed: object) -> StarConfig:
    overrides = list(args.set or [])
    overrides += [f"{key}={value}" for key, value in fixed.items() if value is not None]
    return load_config(args.config, overrides)


def cmd_run(args: argparse.Namespace) -> None:
    from star.loop import run_experiment

    config = _config(args, strategy=args.strategy, seed=args.seed)
    results = run_experiment(config, Path(args.out))
    last = results["rounds"][-1]
    print(f"{config.strategy} seed {config.seed}: AUC {100 * results['auc']:.2f}, final accuracy "
          f"{100 * last['accuracy']:.2f} with {last['n_labeled']} labels -> {args.out}")


def compare(config_path: str | None, overrides: list[str], strategies: list[str],
            seeds: list[int], out: Path) -> str:
    """Every strategy × seed into out/<strategy>/seed<k>, then the summary files; the table."""
    from star.loop import run_experiment
    from star.reports import write_comparison
    from star.strategies import get_strategy

    for name in strategies:
        get_strategy(name)
    configs = [load_config(config_path, [*overrides, f"strategy={name}", f"seed={seed}"])
               for seed in seeds for name in strategies]
    for index, config in enumerate(progress(configs, "compare", unit="run"), start=1):
        start = time.perf_counter()
        results = run_experiment(config, out / config.strategy / f"seed{config.seed}")
        log(f"run {index}/{len(configs)} done: {config.strategy} seed {config.seed}, "
            f"AUC {100 * results['auc']:.2f}, final accuracy "
            f"{100 * results['rounds'][-1]['accuracy']:.2f}, "
            f"{time.perf_counter() - start:.0f}s")
    return write_comparison(out)


def cmd_compare(args: argparse.Namespace) -> None:
    out = Path(args.out)
    table = compare(args.config, list(args.set or []), _csv(args.strategies), _seeds(args.seeds),
                    out)
    print(table)
    print(f"learning curves: {out / 'learning_curves.png'}")


def cmd_demo(args: argparse.Namespace) -> None:
    from star.demo import run_demo

    run_demo(Path(args.out), list(args.set or []))


def cmd_report(args: argparse.Namespace) -> None:
    from star.report import write_report

    page = write_report(Path(args.runs_dir), Path(args.out), args.title)
    print(f"report: {page} (and report.md, PNG and CSV files beside it)")


def cmd_probe_confidence(args: argparse.Namespace) -> None:
    from star.probes import confidence_probe

    run = Path(args.run) if args.run else None
    config_path = args.config or (str(run / "config.yaml") if run else None)
    config = load_config(config_path, list(args.set or []))
    result = confidence_probe(config, Path(args.out), args.shots, run, args.round,
                              args.train_size, args.raw)
    for key, name in (("few_shot", f"{args.shots}-shot base"), ("lora", "LoRA")):
        stats = result[key]
        wrong = stats["mean_confidence_wrong"]
        print(f"{name}: accuracy {100 * stats['accuracy']:.1f} %, ECE {100 * stats['ece']:.1f} %, "
              f"mean CF of wrong answers "
              f"{'–' if wrong is None else f'{100 * wrong:.1f} %'}")
    print(f"density plot: {Path(args.out) / 'confidence_density.png'}")


def cmd_probe_entropy(args: argparse.Namespace) -> None:
    from star.probes import entropy_probe

    result = entropy_probe(Path(args.run), Path(args.out), args.top)
    print(f"top {result['top']} examples by base uncertainty; correlation with iter 0:")
    for label, row in zip(result["iterations"], result["correlation"][0], strict=True):
        print(f"  {label}: {row:+.3f}")
    print(f"heatmap: {Path(args.out) / 'entropy_correlation.png'}")


def cmd_bench(args: argparse.Namespace) -> None:
    from star.bench import main as bench_main

    bench_main(args.config, list(args.set or []), args.quick, args.json, args.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="star", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add_set(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a config key, e.g. --set loop.budget=300 (repeatable)")

    run = commands.add_parser("run", help="one strategy and seed")
    run.add_argument("config", nargs="?", help="YAML config file (defaults when omitted)")
    run.add_argument("--strategy", help="overrides the config's strategy")
    run.add_argument("--seed", type=int, help="overrides the config's seed")
    run.add_argument("--out", required=True, help="run folder (resumed when it exists)")
    add_set(run)
    run.set_defaults(func=cmd_run)

    cmp = commands.add_parser("compare", help="several strategies and seeds, with a summary")
    cmp.add_argument("config", nargs="?", help="YAML config file (defaults when omitted)")
    cmp.add_argument("--strategies", default="random,me,me-star")
    cmp.add_argument("--seeds", default="0,1,2")
    cmp.add_argument("--out", required=True)
    add_set(cmp)
    cmp.set_defaults(func=cmd_compare)

    report = commands.add_parser("report", help="HTML and Markdown report of run folders")
    report.add_argument("runs_dir", help="folder searched for run folders (results.json)")
    report.add_argument("--out", required=True, help="folder for report.html, report.md, ...")
    report.add_argument("--title", default="STAR report")
    report.set_defaults(func=cmd_report)

    probe = commands.add_parser("probe", help="the paper's probe experiments (Sec. 4)")
    probes = probe.add_subparsers(dest="probe", required=True)
    conf = probes.add_parser("confidence", help="few-shot base vs LoRA confidence (Fig. 2)")
    conf.add_argument("config", nargs="?", help="YAML config (default: the run's config.yaml)")
    conf.add_argument("--run", help="run folder whose adapter is the LoRA model")
    conf.add_argument("--round", type=int, help="which round's adapter (default: the last)")
    conf.add_argument("--train-size", type=int, default=200,
                      help="without --run: random labels to train the LoRA model on")
    conf.add_argument("--shots", type=int, default=4, help="in-context demonstrations")
    conf.add_argument("--raw", action="store_true",
                      help="CF from raw label-token probabilities, not renormalised over labels")
    conf.add_argument("--out", required=True)
    add_set(conf)
    conf.set_defaults(func=cmd_probe_confidence)
    ent = probes.add_parser("entropy", help="uncertainty correlation across rounds (Fig. 3)")
    ent.add_argument("run", help="run folder of an uncertainty strategy")
    ent.add_argument("--top", type=int, default=1000, help="examples with the top base uncertainty")
    ent.add_argument("--out", required=True)
    ent.set_defaults(func=cmd_probe_entropy)

    bench = commands.add_parser("bench", help="speed of scoring and training (not a test)")
    bench.add_argument("config", nargs="?",
                       help="YAML config (default: the cpu-sst2 setting on --data-dir)")
    bench.add_argument("--data-dir", help="SST-2 folder for the default setting "
                       "(default: $STAR_SST2_DIR or ../shared/data/SST-2)")
    bench.add_argument("--quick", action="store_true", help="smaller inputs, under 5 minutes")
    bench.add_argument("--json", help="also write the figures to this JSON file")
    add_set(bench)
    bench.set_defaults(func=cmd_bench)

    demo = commands.add_parser("demo", help="random vs me-star on a generated task, offline")
    demo.add_argument("--out", default="runs/demo")
    add_set(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except StarError as exc:
        print(f"star: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("star: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
