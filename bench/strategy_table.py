"""The strategy table (docs/strategies.md): every registered strategy, at its default hyperparameters,
on the default scenario (5-task Split-Digits) and on 5-task Split-MNIST-1D, class-incremental, the
default MLP and training settings, over several seeds: ACC, BWT, forgetting and min-ACC, mean and sd
over seeds, with each method's source paper and, where the literature reports a comparable
benchmark, its figure beside ours.

Each run goes through ``engine.manager.run_in_process`` into a temporary DuckDB file; the metrics are
the store's own (``store.metrics.summaries``). A strategy that cannot run in the setting or with the
model says so in the table (the config check's line), as does one that fails.

Run from the repository root:
  python bench/strategy_table.py                 # every strategy, 5 seeds, writes docs/strategies.md
  python bench/strategy_table.py --quick --strategies si,mas --out /tmp/strategies.md   # 1 seed, 1 epoch
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.config import parse_config  # noqa: E402
from engine.manager import run_in_process  # noqa: E402
from engine.strategies import STRATEGIES  # noqa: E402
from store import Store  # noqa: E402
from store.metrics import summaries  # noqa: E402

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


def make_config(strategy: str, dataset: str, seed: int, epochs: int):
    return parse_config({
        "name": f"table-{strategy}-{dataset}-{seed}", "seed": seed,
        "scenario": {"dataset": dataset, "setting": setting_of(strategy), "n_tasks": 5},
        "strategy": {"name": strategy},
        "train": {"epochs_per_task": epochs},
    })


def run_all(strategies: list[str], scenarios: list[str], seeds: int, epochs: int) -> dict:
    """{(strategy, dataset): {"metrics": {key: [value per seed]}, "note": why not run, or failures}}."""
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="cl-lab-table-") as tmp:
        store = Store(Path(tmp) / "table.duckdb")
        try:
            for dataset in scenarios:
                for name in strategies:
                    cell = out.setdefault((name, dataset), {"metrics": {k: [] for k in METRICS}, "note": ""})
                    started = time.perf_counter()
                    for seed in range(seeds):
                        try:
                            config = make_config(name, dataset, seed, epochs)
                        except ValueError as err:  # a setting or model it does not support
                            cell["note"] = str(err).splitlines()[-1].strip()
                            break
                        try:
                            run_id = run_in_process(store, config)
                        except Exception as err:  # noqa: BLE001 - recorded in the table, the others go on
                            cell["note"] = f"failed: {type(err).__name__}: {err}"
                            break
                        status = store.sql("SELECT status, error FROM runs WHERE id = ?", [run_id])[0]
                        if status[0] != "finished":
                            cell["note"] = f"{status[0]}: {status[1]}"
                            continue
                        summary = summaries(store, [run_id], only=list(METRICS))[0]
                        for key in METRICS:
                            if summary.get(key) is not None:
                                cell["metrics"][key].append(summary[key])
                    print(f"{dataset:8} {name:16} {time.perf_counter() - started:6.1f} s {cell['note']}",
                          file=sys.stderr, flush=True)
        finally:
            store.close()
    return out


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(results: dict, strategies: list[str], scenarios: list[str], seeds: int, epochs: int, command: str) -> str:
    lines = [
        "# Strategies on CL Lab's benchmarks",
        "",
        f"Generated by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Every strategy at its "
        f"default hyperparameters; class-incremental (task-incremental where a method supports only that, as "
        f"noted); the default MLP (256-256), SGD lr 0.05, batch 32, {epochs} "
        f"epoch(s) a task, evaluation every 10 steps; mean ± sd over {seeds} seed(s) (0..{seeds - 1}).",
        "ACC: average accuracy after the last task; BWT: backward transfer; Forgetting: Chaudhry et al.'s "
        "average forgetting; min-ACC: De Lange et al.'s worst accuracy of earlier tasks (definitions in the "
        "app's metric glossary).",
        f"Reported: class-incremental ACC from {REPORTED_SOURCE}; a different, harder dataset, shown for the "
        "ordering of methods, not as a figure to match.",
        "",
    ]
    for dataset in scenarios:
        lines += [f"## {SCENARIOS[dataset]}", "",
                  "| Method | Paper | " + " | ".join(METRICS.values()) + " | Reported ACC (Split-MNIST) | Note |",
                  "|---" * (len(METRICS) + 4) + "|"]
        for name in strategies:
            cls = STRATEGIES[name]
            cell = results[(name, dataset)]
            paper = cls.paper or "reference baseline"
            values = " | ".join(fmt(cell["metrics"][k]) for k in METRICS)
            note = cell["note"].replace("|", "/")
            if setting_of(name) != "class":
                note = (f"{setting_of(name)}-incremental (the only setting it supports); " + note).rstrip("; ")
            lines.append(f"| {cls.title} (`{name}`) | {paper} | {values} | {REPORTED.get(name, '-')} | {note} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method and scenario (default 5)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs a task (default 5, the engine's default)")
    parser.add_argument("--quick", action="store_true", help="a try: 1 seed, 1 epoch a task")
    parser.add_argument("--strategies", help="comma-separated strategy names (default: every registered one)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "strategies.md", help="the Markdown file to write")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    strategies = args.strategies.split(",") if args.strategies else list(STRATEGIES)
    scenarios = args.scenarios.split(",")
    for name, known in [(s, STRATEGIES) for s in strategies] + [(s, SCENARIOS) for s in scenarios]:
        if name not in known:
            parser.error(f"{name!r} is not one of: {', '.join(known)}")
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be at least 1")
    results = run_all(strategies, scenarios, args.seeds, args.epochs)
    command = "python bench/strategy_table.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results, strategies, scenarios, args.seeds, args.epochs, command) + "\n")
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
