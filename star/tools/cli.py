"""The `star` command: run, next, status, label, labelstudio, serve, batch, import, export,
compare, report, noise, probe, bench, plan, demo. Parsing only: each command calls one
function that does the work.

Commands that need torch, transformers or matplotlib import their module when they run, so
the labeling commands start in about a second instead of the ~9 s those imports take.
User errors (bad config, data, names) print one line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from star.active.classes import CURVE_METRICS
from star.active.runfolder import RunFolder, complete_rounds
from star.active.strategies import get_strategy, strategy_of
from star.config import StarConfig, load_config
from star.errors import ConfigError, StarError
from star.processes import leave_processes
from star.tools import labels


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _integers(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise ConfigError(f"{option} '{text}' is not a comma-separated list of integers") from None


def _number(kind: type, low: float, high: float | None = None, *, above: bool = False) -> Any:
    """An argparse type: a number of `kind` at least `low` (above it, with `above`) and at most
    `high`, else a one-line usage error naming the bound."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low}, "
                                             f"got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'abc'"
    return parse


def _config(args: argparse.Namespace, **fixed: object) -> StarConfig:
    overrides = list(args.set or [])
    overrides += [f"{key}={value}" for key, value in fixed.items() if value is not None]
    return load_config(args.config, overrides)


def _report_run(config: StarConfig, out: Path) -> None:
    """Run or resume, then say where it stands: finished, or waiting for labels (exit 0)."""
    from star.active.loop import run_experiment
    from star.processes import launched_processes

    results = run_experiment(config, out)
    if not launched_processes().main:  # the main process of a launch speaks for all
        return
    waiting = results.get("waiting")
    if waiting:
        print(labels.next_steps(out, waiting))
        return
    last = complete_rounds(results)[-1]
    if results["auc"] is None:
        print(f"{config.strategy} seed {config.seed}: {last['n_labeled']} labels, no test set "
              f"(see star status {out}) -> {out}")
        return
    print(f"{config.strategy} seed {config.seed}: AUC {100 * results['auc']:.2f}, final accuracy "
          f"{100 * last['accuracy']:.2f} with {last['n_labeled']} labels -> {out}")


def cmd_run(args: argparse.Namespace) -> None:
    config = _config(args, strategy=args.strategy, seed=args.seed,
                     **{"loop.annotator": args.annotator})
    _report_run(config, Path(args.out))


def cmd_next(args: argparse.Namespace) -> None:
    folder = labels.open_run(Path(args.run))
    _report_run(load_config(folder.config_path), folder.root)


def cmd_status(args: argparse.Namespace) -> None:
    print(labels.status(Path(args.run)))


def cmd_label(args: argparse.Namespace) -> None:
    labels.label_page(Path(args.run), args.host, args.port, args.annotator, args.blind)


def cmd_labelstudio(args: argparse.Namespace) -> None:
    from star.tools.labelstudio_cmd import label_live

    print(label_live(Path(args.run), args.url, args.project, args.create, args.poll))


def cmd_serve(args: argparse.Namespace) -> None:
    from star.tools.labelstudio_cmd import serve

    serve(Path(args.run), args.host, args.port, args.user)


def cmd_batch(args: argparse.Namespace) -> None:
    path = labels.export_batch(Path(args.run), args.format, Path(args.out), args.blind)
    print(f"batch written to {path}")


def cmd_import(args: argparse.Namespace) -> None:
    print(labels.import_labels(Path(args.run), Path(args.file), args.annotator).describe(Path(args.run)))


def cmd_export(args: argparse.Namespace) -> None:
    from star.results.page import write_report

    out = Path(args.out)
    summary = labels.export_labeled(Path(args.run), out)
    print(f"{summary['labels']} labels -> {out}/labeled.jsonl and {out}/dataset "
          f"(datasets.load_from_disk); adapter of round {summary['adapter_round']} -> "
          f"{out}/adapter (PeftModel.from_pretrained)")
    try:
        print(f"report: {write_report(Path(args.run), out / 'report', f'STAR: {args.run}')}")
    except StarError as exc:
        print(f"no report yet ({exc}); star report {args.run} --out REPORT once the run is done")


def cmd_compare(args: argparse.Namespace) -> None:
    from star.tools.compare import compare

    out = Path(args.out)
    strategies = _csv(args.strategies)
    for name in strategies:
        get_strategy(name)  # all names checked before the first run starts
    print(compare(args.config, list(args.set or []), strategies, _integers(args.seeds, "--seeds"),
                  out=out, metric=args.metric))
    print(f"learning curves: {out / 'learning_curves.png'}")


def cmd_demo(args: argparse.Namespace) -> None:
    from star.tools.demo import run_demo

    run_demo(Path(args.out), list(args.set or []))


def cmd_report(args: argparse.Namespace) -> None:
    from star.results.page import write_report
    from star.results.setups import check_switches

    switches = _csv(args.switches or "")
    check_switches(switches)
    pairs = []
    for text in _csv(args.pairs or ""):
        first, _, second = text.partition(":")
        if not second:
            raise ConfigError(f"--pairs '{text}': write each pair as FIRST:SECOND")
        for name in (first, second):
            get_strategy(strategy_of(name))
        pairs.append((first, second))
    page = write_report(Path(args.runs_dir), Path(args.out), args.title, pairs, args.metric,
                        switches)
    print(f"report: {page} (and report.md, PNG and CSV files beside it)")


def cmd_noise(args: argparse.Namespace) -> None:
    from star.tools.noise import describe, noise

    record = noise(Path(args.run), args.round, args.train_seeds)
    print(describe(record, RunFolder(Path(args.run)).noise_path(record["round"])))


def cmd_probe_confidence(args: argparse.Namespace) -> None:
    from star.tools.probes import confidence_probe

    run = Path(args.run) if args.run else None
    config_path = args.config or (RunFolder(run).config_path if run else None)
    config = load_config(config_path, list(args.set or []))
    result = confidence_probe(config, Path(args.out), shots=args.shots, run=run,
                              round_index=args.round, train_size=args.train_size,
                              raw=not args.renormalised)
    for key, name in (("few_shot", f"{args.shots}-shot base"), ("lora", "LoRA")):
        stats = result[key]
        wrong = stats["mean_confidence_wrong"]
        print(f"{name}: accuracy {100 * stats['accuracy']:.1f} %, ECE {100 * stats['ece']:.1f} %, "
              f"mean CF of wrong answers "
              f"{'–' if wrong is None else f'{100 * wrong:.1f} %'}")
    print(f"density plot: {Path(args.out) / 'confidence_density.png'}")


def cmd_probe_entropy(args: argparse.Namespace) -> None:
    from star.tools.probes import entropy_probe

    result = entropy_probe(Path(args.run), Path(args.out), args.top)
    print(f"top {result['top']} examples by base uncertainty; correlation with iter 0:")
    for label, row in zip(result["iterations"], result["correlation"][0], strict=True):
        print(f"  {label}: {row:+.3f}")
    print(f"heatmap: {Path(args.out) / 'entropy_correlation.png'}")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.pool_sizes:
        from star.tools import pool_memory

        pool_memory.main(_integers(args.pool_sizes, "--pool-sizes"), Path(args.pool_work))
        return
    from star.tools import bench

    bench.main(args.config, list(args.set or []), quick=args.quick, json_path=args.json,
               data_dir=args.data_dir, generative_config=args.generative_config)


def cmd_plan(args: argparse.Namespace) -> None:
    from star.tools.plan import Hardware, run_plan

    config = _config(args, strategy=args.strategy)
    hardware = Hardware(devices=args.gpus, peak=args.gpu_flops, mfu=args.mfu,
                        train_mfu=args.train_mfu or args.mfu,
                        generation_mfu=args.generation_mfu or args.mfu)
    print(run_plan(config, hardware, args.architecture))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="star", description="Active learning for LoRA fine-tuning (STAR): run, label, "
        "compare and report.", epilog="star COMMAND --help describes each command.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add_set(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a config key, e.g. --set loop.budget=300 (repeatable)")

    def add_metric(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--metric", choices=list(CURVE_METRICS), default="accuracy",
                         help="what learning curves, AUC and RIPL are of (default: accuracy; "
                              "macro_f1 weighs every class alike)")

    def add_run_folder(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("run", help="the run folder (the --out of star run)")

    run = commands.add_parser("run", help="one strategy and seed (resumes a stopped run)")
    run.add_argument("config", nargs="?", help="YAML config file (defaults when omitted)")
    run.add_argument("--strategy", help="overrides the config's strategy")
    run.add_argument("--seed", type=int, help="overrides the config's seed")
    run.add_argument("--annotator", choices=["oracle", "people"],
                     help="who labels: the pool's own answers (oracle) or people (the run "
                          "stops and waits at each batch)")
    run.add_argument("--out", required=True, help="run folder (resumed when it exists)")
    add_set(run)
    run.set_defaults(func=cmd_run)

    nxt = commands.add_parser("next", help="continue a run with its saved config (after labeling)")
    add_run_folder(nxt)
    nxt.set_defaults(func=cmd_next)

    stat = commands.add_parser("status", help="rounds, labels, agreement, what the run waits for")
    add_run_folder(stat)
    stat.set_defaults(func=cmd_status)

    label = commands.add_parser("label", help="label the waiting batch in your browser")
    add_run_folder(label)
    label.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default loopback; another host is reachable by others)")
    label.add_argument("--port", type=_number(int, 0, 65535), default=8765,
                       help="default 8765; 0 takes any free port")
    label.add_argument("--annotator", default=labels.default_annotator(),
                       help="your name, kept with each label (default: your login name)")
    label.add_argument("--blind", action="store_true",
                       help="hide the model's suggestion and confidence (also: loop.blind_labeling)")
    label.set_defaults(func=cmd_label)

    live = commands.add_parser("labelstudio", help="label in a Label Studio project: STAR pushes "
                               "each batch, journals each annotation, runs each round")
    add_run_folder(live)
    live.add_argument("--url", required=True, help="Label Studio's address, e.g. http://localhost:8080 "
                      "(the key: environment variable LABEL_STUDIO_API_KEY)")
    which = live.add_mutually_exclusive_group(required=True)
    which.add_argument("--project", type=_number(int, 1), help="an existing project made for this run")
    which.add_argument("--create", action="store_true", help="create the project (once: a rerun "
                       "goes on in the project the run is linked to)")
    live.add_argument("--poll", type=_number(float, 0, above=True), default=5.0,
                      help="seconds between looks at the project's annotations (default 5)")
    live.set_defaults(func=cmd_labelstudio)

    srv = commands.add_parser("serve", help="the run's model as a Label Studio ML backend: "
                              "predictions, and Start training runs the next round")
    add_run_folder(srv)
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default loopback; another host is reachable by others)")
    srv.add_argument("--port", type=_number(int, 0, 65535), default=9090,
                     help="default 9090 (Label Studio's usual ML backend port); 0 takes any free port")
    srv.add_argument("--user", help="require Basic Auth with this user; the password from "
                     "STAR_SERVE_PASSWORD (set both in Label Studio's model settings)")
    srv.set_defaults(func=cmd_serve)

    batch = commands.add_parser("batch", help="write the waiting batch for another labeling tool")
    add_run_folder(batch)
    batch.add_argument("--format", choices=["labelstudio", "csv", "jsonl"], default="labelstudio",
                       help="default: labelstudio")
    batch.add_argument("--out", required=True, help="file to write (.json, .csv or .jsonl)")
    batch.add_argument("--blind", action="store_true",
                       help="leave out the model's suggestion and confidence (also: loop.blind_labeling)")
    batch.set_defaults(func=cmd_batch)

    imp = commands.add_parser("import", help="labels from Label Studio (JSON, JSON-MIN, CSV) or "
                                             "a plain id,label CSV/JSONL")
    add_run_folder(imp)
    imp.add_argument("file")
    imp.add_argument("--annotator", help="name to record (default: each annotation's author in a "
                                          "Label Studio export, the `annotator` column of a plain "
                                          "file, else the file's name)")
    imp.set_defaults(func=cmd_import)

    exp = commands.add_parser("export", help="the labeled set (JSONL, datasets) and the adapter")
    add_run_folder(exp)
    exp.add_argument("--out", required=True)
    exp.set_defaults(func=cmd_export)

    cmp = commands.add_parser("compare", help="several strategies and seeds, with a summary")
    cmp.add_argument("config", nargs="?", help="YAML config file (defaults when omitted)")
    cmp.add_argument("--strategies", default="random,me,me-star",
                     help="comma-separated strategy names (default: random,me,me-star)")
    cmp.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    cmp.add_argument("--out", required=True)
    add_metric(cmp)
    add_set(cmp)
    cmp.set_defaults(func=cmd_compare)

    report = commands.add_parser("report", help="HTML and Markdown report of run folders")
    report.add_argument("runs_dir", help="folder searched for run folders (results.json)")
    report.add_argument("--out", required=True, help="folder for report.html, report.md, ...")
    report.add_argument("--title", default="STAR report")
    report.add_argument("--pairs", help="strategy pairs compared by seed besides each against "
                        "random, e.g. me-star:me,bald:me")
    report.add_argument("--switches", help="config keys compared as if they were strategies, "
                        "e.g. train.balance: a run with a value other than the default becomes "
                        "the row 'random train.balance=classes' of its setup, paired by seed "
                        "with random (name it so in --pairs; a value holding ',' or ':' cannot "
                        "be named there)")
    add_metric(report)
    report.set_defaults(func=cmd_report)

    noise = commands.add_parser("noise", help="retrain a round's labels under other training "
                                "seeds: how much of its accuracy is the seed")
    add_run_folder(noise)
    noise.add_argument("--round", type=_number(int, 0), help="which round (default: the last)")
    noise.add_argument("--train-seeds", type=_number(int, 2), default=3,
                       help="training seeds to retrain under (default 3; retrains done before "
                            "are kept)")
    noise.set_defaults(func=cmd_noise)

    probe = commands.add_parser("probe", help="the paper's probe experiments (Sec. 4)")
    probes = probe.add_subparsers(dest="probe", required=True)
    conf = probes.add_parser("confidence", help="few-shot base vs LoRA confidence (Fig. 2)")
    conf.add_argument("config", nargs="?", help="YAML config (default: the run's config.yaml)")
    conf.add_argument("--run", help="run folder whose adapter is the LoRA model")
    conf.add_argument("--round", type=_number(int, 0), help="which round's adapter (default: the last)")
    conf.add_argument("--train-size", type=_number(int, 1), default=200,
                      help="without --run: random labels to train the LoRA model on")
    conf.add_argument("--shots", type=_number(int, 0), default=4, help="in-context demonstrations")
    conf.add_argument("--renormalised", action="store_true",
                      help="CF from the label probabilities renormalised over the labels (default: "
                           "the raw token probabilities, the paper's Eq. 4)")
    conf.add_argument("--out", required=True)
    add_set(conf)
    conf.set_defaults(func=cmd_probe_confidence)
    ent = probes.add_parser("entropy", help="uncertainty correlation across rounds (Fig. 3)")
    ent.add_argument("run", help="run folder of an uncertainty strategy")
    ent.add_argument("--top", type=_number(int, 4), default=1000,
                     help="examples with the top base uncertainty (a correlation's interval "
                          "needs 4)")
    ent.add_argument("--out", required=True)
    ent.set_defaults(func=cmd_probe_entropy)

    bench_cmd = commands.add_parser("bench", help="speed of scoring and training (not a test)")
    bench_cmd.add_argument("config", nargs="?",
                           help="YAML config (default: the cpu-sst2 setting on --data-dir)")
    bench_cmd.add_argument("--data-dir", help="SST-2 folder for the default setting "
                           "(default: $STAR_SST2_DIR or ../shared/data/SST-2)")
    bench_cmd.add_argument("--quick", action="store_true", help="smaller inputs, under 5 minutes")
    bench_cmd.add_argument("--json", help="also write the figures to this JSON file")
    bench_cmd.add_argument("--pool-sizes", metavar="N,N",
                           help="instead: peak memory of a two-round run on synthetic pools of "
                                "these sizes, each in a fresh process (e.g. 10000,1000000)")
    bench_cmd.add_argument("--pool-work", default="runs/pool-memory",
                           help="folder for --pool-sizes' data, model and runs")
    bench_cmd.add_argument("--generative-config", metavar="PATH",
                           help="config of a generative task (e.g. configs/paper-gsm8k.yaml): "
                                "adds the generative ME row, batched greedy generation against "
                                "one example at a time, on the bench's model")
    add_set(bench_cmd)
    bench_cmd.set_defaults(func=cmd_bench)

    plan = commands.add_parser("plan", help="FLOPs, time and device-hours of a run, per round")
    plan.add_argument("config", nargs="?", help="YAML config file (defaults when omitted)")
    plan.add_argument("--strategy", help="overrides the config's strategy")
    plan.add_argument("--gpus", "--devices", type=_number(int, 1), default=1,
                      help="devices (data parallel); a CPU is one device")
    plan.add_argument("--gpu-flops", "--device-flops", type=_number(float, 0, above=True),
                      default=989e12,
                      help="peak FLOP/s of one device at the compute dtype (default: H100 SXM "
                      "dense bf16, 989e12; a CPU: `star bench`'s matmul peak line, GFLOP/s "
                      "× 1e9, of its compute dtype)")
    plan.add_argument("--mfu", type=_number(float, 0, 1, above=True), default=0.4,
                      help="model FLOPs utilisation of inference (scoring, evaluation)")
    plan.add_argument("--train-mfu", type=_number(float, 0, 1, above=True),
                      help="utilisation of training (default: --mfu)")
    plan.add_argument("--generation-mfu", type=_number(float, 0, 1, above=True),
                      help="utilisation of token-by-token decoding (default: --mfu)")
    plan.add_argument("--architecture", help="the model's config.json, if not on this machine")
    add_set(plan)
    plan.set_defaults(func=cmd_plan)

    demo = commands.add_parser("demo", help="random vs the default strategy on a generated task, offline")
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
    finally:
        leave_processes()
    return 0


if __name__ == "__main__":
    sys.exit(main())
