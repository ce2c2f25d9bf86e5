"""The strategy table (docs/strategies.md): every registered strategy, at its default hyperparameters,
on the default scenario (5-task Split-Digits) and on 5-task Split-MNIST-1D, class-incremental, the
default MLP and training settings, over several seeds: ACC, BWT, forgetting and min-ACC, mean and sd
over seeds, with each method's source paper and, where the literature reports a comparable
benchmark, its figure beside ours.

Each run goes through ``engine.runs.manager.run_in_process`` into a temporary DuckDB file; the metrics are
the store's own (``store.metrics.summaries``). A strategy that cannot run in the setting or with the
model says so in the table (the config check's line), as does one that fails. Every cell says how
many seeds finished of those launched, and names the seeds that diverged (their metrics are not in
the mean). Joint, the upper reference, trains to convergence (``--joint-epochs``, its own budget);
the task-incremental methods stand beside a task-incremental naive baseline.

Run from the repository root:
  python bench/strategy_table.py                 # every strategy, 5 seeds, writes docs/strategies.md
  python bench/strategy_table.py --quick --strategies si,mas --out /tmp/strategies.md   # 1 seed, 1 epoch
  python bench/strategy_table.py --strategies mas --hparam mas.mas_lambda=0.5   # a hyperparameter set
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.config import parse_config  # noqa: E402
from engine.runs.manager import run_in_process  # noqa: E402
from engine.strategies import STRATEGIES  # noqa: E402
from store import Store  # noqa: E402
from store.metrics.summary import summaries  # noqa: E402

SCENARIOS = {"digits": "5-task Split-Digits (the default scenario)", "mnist1d": "5-task Split-MNIST-1D"}
METRICS = {"acc": "ACC", "bwt": "BWT", "forgetting": "Forgetting", "min_acc": "min-ACC"}
# Reported class-incremental ACC on 5-task Split-MNIST with an MLP (van de Ven, Tuytelaars & Tolias,
# 2022, "Three types of incremental learning"; /work/shared/docs/metrics.md): not our datasets (CL Lab
# has no MNIST), a check of the ordering. No paper reports Split-Digits or Split-MNIST-1D.
REPORTED = {"naive": "0.20", "joint": "0.98", "ewc": "0.20", "si": "0.20", "lwf": "0.22-0.24", "replay": "0.90"}
REPORTED_SOURCE = "van de Ven et al. (2022), 5-task Split-MNIST, class-incremental, MLP"


def setting_of(strategy: str) -> str:
    """Class-incremental, or the first setting a method supports (PackNet, HAT, CLR: task-incremental)."""
    settings = STRATEGIES[strategy].settings
    return "class" if "class" in settings else settings[0]


def rows_of(strategies: list[str]) -> list[tuple[str, str]]:
    """(strategy, setting) rows: the class-incremental ones, then the task-incremental ones after a
    task-incremental naive baseline (their own setting's floor, not the class-incremental one)."""
    rows = [(name, setting_of(name)) for name in strategies if setting_of(name) == "class"]
    task_il = [(name, setting_of(name)) for name in strategies if setting_of(name) != "class"]
    if task_il:
        rows += [("naive", "task")] + task_il
    return rows


def make_config(strategy: str, dataset: str, seed: int, epochs: int, setting: str | None = None,
                joint_epochs: int = 0, hparams: dict | None = None):
    extra = dict(hparams or {})
    if strategy == "joint" and joint_epochs:
        extra.setdefault("epochs", joint_epochs)
    return parse_config({
        "name": f"table-{strategy}-{dataset}-{seed}", "seed": seed,
        "scenario": {"dataset": dataset, "setting": setting or setting_of(strategy), "n_tasks": 5},
        "strategy": {"name": strategy, **extra},
        "train": {"epochs_per_task": epochs},
    })


def run_all(strategies: list[str], scenarios: list[str], seeds: int, epochs: int, joint_epochs: int = 0,
            hparams: dict | None = None) -> dict:
    """{(strategy, setting, dataset): {"metrics": {key: [value per finished seed]}, "launched": n,
    "finished": n, "diverged": [(seed, step)], "note": why not run, or failures}}."""
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="cl-lab-table-") as tmp:
        store = Store(Path(tmp) / "table.duckdb")
        try:
            for dataset in scenarios:
                for name, setting in rows_of(strategies):
                    cell = out.setdefault((name, setting, dataset), {
                        "metrics": {k: [] for k in METRICS}, "launched": 0, "finished": 0, "diverged": [], "note": ""})
                    started = time.perf_counter()
                    for seed in range(seeds):
                        try:
                            config = make_config(name, dataset, seed, epochs, setting, joint_epochs,
                                                 (hparams or {}).get(name))
                        except ValueError as err:  # a setting or model it does not support
                            cell["note"] = str(err).splitlines()[-1].strip()
                            break
                        cell["launched"] += 1
                        try:
                            run_id = run_in_process(store, config)
                        except Exception as err:  # noqa: BLE001 - recorded in the table, the others go on
                            cell["note"] = f"failed: {type(err).__name__}: {err}"
                            break
                        status, error, step = store.sql("SELECT status, error, last_step FROM runs WHERE id = ?",
                                                        [run_id])[0]
                        if status == "diverged":
                            cell["diverged"].append((seed, step))
                            continue
                        if status != "finished":
                            cell["note"] = f"seed {seed} {status}: {error}"
                            continue
                        cell["finished"] += 1
                        summary = summaries(store, [run_id], only=list(METRICS))[0]
                        for key in METRICS:
                            if summary.get(key) is not None:
                                cell["metrics"][key].append(summary[key])
                    print(f"{dataset:8} {name:16} {setting:5} {time.perf_counter() - started:6.1f} s "
                          f"{cell['finished']}/{cell['launched']} finished {cell['note']}", file=sys.stderr, flush=True)
        finally:
            store.close()
    return out


def seeds_note(cell: dict) -> str:
    """The seeds column: n finished of n launched, and which diverged (left out of the mean)."""
    if not cell["launched"]:
        return "-"
    text = f"{cell['finished']}/{cell['launched']}"
    if cell["diverged"]:
        text += " (diverged: " + ", ".join(f"seed {seed} at step {step}" for seed, step in cell["diverged"]) + ")"
    return text


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(results: dict, strategies: list[str], scenarios: list[str], seeds: int, epochs: int, command: str,
             joint_epochs: int = 0) -> str:
    lines = [
        "# Strategies on CL Lab's benchmarks",
        "",
        f"Generated by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Every strategy at its "
        f"default hyperparameters; class-incremental (task-incremental where a method supports only that, as "
        f"noted); the default MLP (256-256), SGD lr 0.05, batch 32, {epochs} "
        f"epoch(s) a task, evaluation every 10 steps; mean ± sd over the seeds that finished of {seeds} "
        f"launched (0..{seeds - 1}): Seeds gives n finished of n launched and names the seeds that diverged "
        "(the training loss became non-finite; they are not in the mean). Joint, the upper reference, trains "
        + (f"{joint_epochs} epochs over all tasks' data (to convergence). " if joint_epochs else
           f"{epochs} epoch(s) over all tasks' data. ")
        + "Task-incremental rows (methods that support only that setting) follow a task-incremental naive "
        "baseline, their setting's floor.",
        "ACC: average accuracy after the last task; BWT: backward transfer; Forgetting: Chaudhry et al.'s "
        "average forgetting; min-ACC: De Lange et al.'s worst accuracy of earlier tasks (definitions in the "
        "app's metric glossary).",
        f"Reported: class-incremental ACC from {REPORTED_SOURCE}; a different, harder dataset, shown for the "
        "ordering of methods, not as a figure to match.",
        "",
    ]
    for dataset in scenarios:
        lines += [f"## {SCENARIOS[dataset]}", "",
                  "| Method | Paper | Seeds | " + " | ".join(METRICS.values()) + " | Reported ACC (Split-MNIST) | Note |",
                  "|---" * (len(METRICS) + 5) + "|"]
        for name, setting in rows_of(strategies):
            cls = STRATEGIES[name]
            cell = results[(name, setting, dataset)]
            paper = cls.paper or "reference baseline"
            values = " | ".join(fmt(cell["metrics"][k]) for k in METRICS)
            note = cell["note"].replace("|", "/")
            if setting != "class":
                why = "the baseline of the rows below" if name == "naive" else "the only setting it supports"
                note = (f"{setting}-incremental ({why}); " + note).rstrip("; ")
            reported = REPORTED.get(name, "-") if setting == "class" else "-"
            lines.append(f"| {cls.title} (`{name}`) | {paper} | {seeds_note(cell)} | {values} | {reported} | {note} |")
        lines.append("")
    return "\n".join(lines)


def parse_value(text: str):
    """A --hparam value as YAML reads it (0.5, true, a word), with 1e5 a number too (YAML 1.1 wants 1.0e5)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(text)
        except ValueError:
            pass
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method and scenario (default 5)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs a task (default 5, the engine's default)")
    parser.add_argument("--quick", action="store_true", help="a try: 1 seed, 1 epoch a task")
    parser.add_argument("--strategies", help="comma-separated strategy names (default: every registered one)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--joint-epochs", type=int, default=50,
                        help="Joint's own epochs over all tasks' data, to convergence (default 50; 0: --epochs)")
    parser.add_argument("--hparam", action="append", default=[], metavar="STRATEGY.KEY=VALUE",
                        help="a hyperparameter for one strategy's runs (repeatable), e.g. mas.mas_lambda=0.5")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "strategies.md", help="the Markdown file to write")
    args = parser.parse_args(argv)
    hparams: dict = {}
    for item in args.hparam:
        name, _, rest = item.partition(".")
        key, eq, value = rest.partition("=")
        if not eq or not key or name not in STRATEGIES:
            parser.error(f"--hparam {item!r}: give STRATEGY.KEY=VALUE with a strategy of: {', '.join(STRATEGIES)}")
        hparams.setdefault(name, {})[key] = parse_value(value)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    strategies = args.strategies.split(",") if args.strategies else list(STRATEGIES)
    scenarios = args.scenarios.split(",")
    for name, known in [(s, STRATEGIES) for s in strategies] + [(s, SCENARIOS) for s in scenarios]:
        if name not in known:
            parser.error(f"{name!r} is not one of: {', '.join(known)}")
    if args.seeds < 1 or args.epochs < 1 or args.joint_epochs < 0:
        parser.error("--seeds and --epochs must be at least 1, --joint-epochs at least 0")
    results = run_all(strategies, scenarios, args.seeds, args.epochs, args.joint_epochs, hparams)
    command = "python bench/strategy_table.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results, strategies, scenarios, args.seeds, args.epochs, command,
                                 args.joint_epochs) + "\n")
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
