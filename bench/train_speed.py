"""Training speed of the engine against a plain PyTorch loop doing the same work.

Workload: the default 5-task Split-Digits (class-incremental), MLP 64-256-256-10, batch 32, SGD lr 0.05,
5 epochs a task, continual evaluation every 10 steps on every task's test set (plus a full evaluation
before training and at each task's end, as the engine does). Strategies: Naive, Replay (reservoir buffer
of 200, 32 replayed samples a step) and EWC (lambda 1000, separate penalties, diagonal empirical Fisher
after each task). Both sides get their data from ``engine.scenarios.build_scenario`` on the same
``ScenarioConfig`` and build it inside the timed region, and both run with ``torch.set_num_threads(1)``.

What is measured (median and best of several repeats, plain and engine interleaved):
  1. iterations/s of the plain loop written here vs. the engine's ``train_run`` in this process with a
     ``BufferedSink`` whose batches are discarded (the training loop's own cost);
  2. iterations/s end to end through ``RunManager`` with a real temporary DuckDB store and a warm worker
     (from ``submit`` until the run is finished; the worker is started and ready before timing);
  3. ms per continual evaluation of all five test sets: ``ContinualEvaluation.evaluate`` vs. a per-task
     loop with argmax accuracy;
  4. launch latency: ``manager.submit`` until the run's first metric row is visible in the store
     (polling ``count(*)``), with a warm idle worker, and cold (a manager just created).

Run from the repository root:  python bench/train_speed.py [--repeats 5] [--json PATH] [--quick]
It takes about 1-2 minutes on a 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.func import functional_call, grad, vmap  # noqa: E402

from engine.config import parse_config  # noqa: E402
from engine.evaluation import BufferedSink, ContinualEvaluation  # noqa: E402
from engine.models import build_model  # noqa: E402
from engine.module import ContinualModule  # noqa: E402
from engine.scenarios import build_scenario  # noqa: E402
from engine.strategies import STRATEGIES  # noqa: E402
from engine.training.train import train_run  # noqa: E402

TARGET_RATIO = 0.8  # engine it/s >= 0.8x the plain loop's
TARGET_LAUNCH_S = 1.5  # submit -> first metric row in the store

STRATEGY_SPECS = {
    "naive": {"name": "naive"},
    "replay": {"name": "replay", "buffer_size": 200, "replay_batch_size": 32},
    "ewc": {"name": "ewc", "ewc_lambda": 1000.0, "mode": "separate", "fisher": "per_sample"},
    "ewc_minibatch": {"name": "ewc", "ewc_lambda": 100.0, "mode": "separate", "fisher": "minibatch"},
}
PLAIN_FISHER_CHUNK = 32  # samples per vmap chunk of the plain loop's per-sample gradients (fastest here)


def make_config(strategy: dict, name: str = "bench"):
    return parse_config({
        "name": name, "seed": 0,
        "scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5},
        "model": {"name": "mlp", "hidden": [256, 256]},
        "strategy": strategy,
        "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs_per_task": 5},
        "eval": {"every": 10, "subset": None},
    })


# ---- the plain PyTorch loop ------------------------------------------------------------------------
class PlainReservoir:
    """Reservoir sampling over a stream of mini-batches (every sample seen has the same chance to stay)."""

    def __init__(self, size: int, dim: int, generator: torch.Generator):
        self.size, self.seen, self.g = size, 0, generator
        self.x = torch.empty(size, dim)
        self.y = torch.empty(size, dtype=torch.long)

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        count = self.seen + torch.arange(1, len(y) + 1)
        slot = torch.where(count <= self.size, count - 1, (torch.rand(len(y), generator=self.g) * count).long())
        keep = slot < self.size
        self.x[slot[keep]], self.y[slot[keep]] = x[keep], y[keep]
        self.seen += len(y)

    def sample(self, n: int):
        idx = torch.randint(len(self), (min(n, len(self)),), generator=self.g)
        return self.x[idx], self.y[idx]


def plain_fisher(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher: the mean squared per-sample gradient (torch.func, in chunks)."""
    params = {n: p.detach() for n, p in net.named_parameters()}

    def sample_loss(p, xi, yi):
        return F.cross_entropy(functional_call(net, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(0, len(y), PLAIN_FISHER_CHUNK):
        for n, g in per_sample(params, x[i:i + PLAIN_FISHER_CHUNK], y[i:i + PLAIN_FISHER_CHUNK]).items():
            fisher[n] += g.pow(2).sum(0)
    return {n: f / len(y) for n, f in fisher.items()}


def plain_minibatch_fisher(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Avalanche's estimate: the mean over in-order mini-batches of the squared mini-batch gradient."""
    fisher = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    starts = range(0, len(y), batch_size)
    for i in starts:
        net.zero_grad()
        F.cross_entropy(net(x[i:i + batch_size]), y[i:i + batch_size]).backward()
        for n, p in net.named_parameters():
            fisher[n] += p.grad.pow(2)
    return {n: f / len(starts) for n, f in fisher.items()}


def plain_evaluate(net: nn.Module, test_sets) -> list[float]:
    """Accuracy on every task's test set, one task at a time."""
    net.eval()
    with torch.inference_mode():
        accs = [(net(x).argmax(1) == y).float().mean().item() for x, y in test_sets]
    net.train()
    return accs


def plain_run(config) -> tuple[int, list[float]]:
    """The same run as the engine's, in plain PyTorch. Returns (steps, final accuracy per task)."""
    strategy = config.strategy["name"]
    torch.manual_seed(config.seed)
    scenario = build_scenario(config.scenario)
    net = build_model(config.model, scenario.input_dim, scenario.n_classes)
    test_sets = [(t.test_x, t.test_y) for t in scenario.tasks]
    batches = torch.Generator().manual_seed(config.seed)
    buffer = PlainReservoir(config.strategy.get("buffer_size", 0), scenario.input_dim,
                            torch.Generator().manual_seed(config.seed)) if strategy == "replay" else None
    replay_batch = config.strategy.get("replay_batch_size", 0)
    ewc_lambda = config.strategy.get("ewc_lambda", 0.0)
    minibatch = config.strategy.get("fisher") == "minibatch"
    ewc_scale = 1.0 if minibatch else 0.5  # Avalanche's lambda, or Kirkpatrick's 0.5 x lambda
    penalties: list[tuple[dict, dict]] = []  # (fisher, optimum) per finished task
    bs, every = config.train.batch_size, config.eval.every
    losses: list[float] = []
    evals: list[tuple[int, list[float]]] = [(0, plain_evaluate(net, test_sets))]
    step = 0
    for task in scenario.tasks:
        x, y = task.train_x, task.train_y
        optimizer = torch.optim.SGD(net.parameters(), lr=config.train.lr)
        for _epoch in range(config.train.epochs_per_task):
            order = torch.randperm(len(y), generator=batches)
            for i in range(0, len(y), bs):
                idx = order[i:i + bs]
                xb, yb = x[idx], y[idx]
                if buffer is not None and len(buffer):
                    rx, ry = buffer.sample(replay_batch)
                    loss = F.cross_entropy(net(torch.cat([xb, rx])), torch.cat([yb, ry]))
                else:
                    loss = F.cross_entropy(net(xb), yb)
                if penalties:
                    penalty = 0.0
                    for fisher, optimum in penalties:
                        for n, p in net.named_parameters():
                            penalty = penalty + (fisher[n] * (p - optimum[n]).pow(2)).sum()
                    loss = loss + ewc_scale * ewc_lambda * penalty
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if buffer is not None:
                    buffer.add(xb, yb)
                step += 1
                value = loss.item()
                losses.append(value)
                if not math.isfinite(value):
                    raise RuntimeError(f"plain loop diverged at step {step}")
                if step % every == 0:
                    evals.append((step, plain_evaluate(net, test_sets)))
        evals.append((step, plain_evaluate(net, test_sets)))  # the accuracy-matrix row of this task
        if strategy == "ewc" and task is not scenario.tasks[-1]:  # the last task's Fisher is never used
            fisher = plain_minibatch_fisher(net, x, y, bs) if minibatch else plain_fisher(net, x, y)
            penalties.append((fisher, {n: p.detach().clone() for n, p in net.named_parameters()}))
    return step, evals[-1][1]


# ---- the engine, in this process -------------------------------------------------------------------
class DiscardSink(BufferedSink):
    """The engine's buffered sink with batches thrown away (but the last one kept, for the accuracy)."""

    def __init__(self):
        super().__init__(run_id=0)
        self.last: dict | None = None

    def emit(self, batch: dict) -> None:
        self.last = batch

    def final_acc(self) -> list[float]:
        b = self.last
        rows = [i for i, m in enumerate(b["metric"]) if m == "boundary_acc"]
        last_step = max(b["step"][i] for i in rows)
        return [float(b["value"][i]) for i in rows if b["step"][i] == last_step]


def engine_run(config) -> tuple[int, list[float]]:
    sink = DiscardSink()
    result = train_run(config, sink)
    if result.status != "finished":
        raise RuntimeError(f"engine run {result.status}: {result.error}")
    return result.step, sink.final_acc()


def timed(fn, *args):
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "best": min(values), "all": values}


def bench_in_process(repeats: int, strategies: dict) -> dict:
    results = {}
    for label, spec in strategies.items():
        config = make_config(spec)
        plain_run(config), engine_run(config)  # warm-up (lazy imports, first vmap, allocator)
        t_plain, t_engine = [], []
        for _ in range(repeats):  # interleaved, so drift hits both alike
            dt, (steps, acc_plain) = timed(plain_run, config)
            t_plain.append(dt)
            dt, (steps_e, acc_engine) = timed(engine_run, config)
            t_engine.append(dt)
        assert steps == steps_e, (steps, steps_e)
        results[label] = {
            "steps": steps,
            "plain_s": summary(t_plain), "engine_s": summary(t_engine),
            "plain_its": {"median": steps / statistics.median(t_plain), "best": steps / min(t_plain)},
            "engine_its": {"median": steps / statistics.median(t_engine), "best": steps / min(t_engine)},
            "final_avg_acc": {"plain": statistics.mean(acc_plain), "engine": statistics.mean(acc_engine)},
        }
    return results


def bench_evaluation(n: int = 300, blocks: int = 5) -> dict:
    config = make_config(STRATEGY_SPECS["naive"])
    scenario = build_scenario(config.scenario)
    torch.manual_seed(0)
    net = build_model(config.model, scenario.input_dim, scenario.n_classes)
    module = ContinualModule(net, STRATEGIES["naive"](), config.train, scenario.class_mask, scenario.n_classes)
    test_sets = [(t.test_x, t.test_y) for t in scenario.tasks]
    evaluation = ContinualEvaluation(test_sets, DiscardSink(), every=10, class_mask=scenario.class_mask)
    engine_acc, _ = evaluation.evaluate(module)
    assert all(abs(a - b) < 1e-6 for a, b in zip(engine_acc, plain_evaluate(net, test_sets)))

    def per_eval_ms(fn) -> list[float]:
        out = []
        for _ in range(blocks):
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - t0) / n * 1000)
        return out

    per_eval_ms(lambda: plain_evaluate(net, test_sets))  # warm-up
    plain, engine = [], []
    for _ in range(2):
        plain += per_eval_ms(lambda: plain_evaluate(net, test_sets))
        engine += per_eval_ms(lambda: evaluation.evaluate(module))
    return {"plain_ms": summary(plain), "engine_ms": summary(engine),
            "samples": sum(len(y) for _, y in test_sets)}


# ---- the engine, through the run manager and a DuckDB store -----------------------------------------
def wait_until(predicate, timeout: float, interval: float = 0.002):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("timed out")


def worker_ready(manager) -> bool:
    return manager.counts()["idle"] > 0


def first_metric_latency(store, manager, config) -> tuple[float, int]:
    """Seconds from submit until the run's first metric row can be read from the store."""
    t0 = time.perf_counter()
    run_id = manager.submit(config)
    wait_until(lambda: store.sql("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])[0][0] > 0, 120)
    return time.perf_counter() - t0, run_id


def bench_manager(repeats: int, strategies: dict, launches: int, cold_launches: int) -> dict:
    from engine.runs.manager import RunManager
    from store import Store

    out: dict = {"end_to_end": {}, "launch": {}}
    with tempfile.TemporaryDirectory(prefix="cl-lab-bench-") as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        t0 = time.perf_counter()
        manager = RunManager(store, max_parallel=1, warm_workers=1)
        wait_until(lambda: worker_ready(manager), 120, 0.01)
        out["worker_start_s"] = time.perf_counter() - t0
        try:
            # (b) end to end, submit -> finished, on a worker that is ready and idle; the plain loop is
            # timed again alongside (this process is idle while the worker trains), for the ratio
            for label, spec in strategies.items():
                config = make_config(spec, name=f"bench-{label}")
                times, plain, owner_cpu = [], [], []
                first_run = None
                for k in range(repeats + 1):
                    wait_until(lambda: worker_ready(manager), 60)
                    t0, c0 = time.perf_counter(), time.process_time()
                    run_id = manager.submit(config)
                    status = manager.wait(run_id, timeout=120)
                    dt = time.perf_counter() - t0
                    cpu = time.process_time() - c0  # this process: the store's writer and the reader
                    if status != "finished":
                        raise RuntimeError(f"run {run_id} {status}")
                    if k == 0:
                        first_run = dt  # this strategy's first run in the worker: not counted
                        continue
                    times.append(dt)
                    owner_cpu.append(cpu)
                    plain.append(timed(plain_run, config)[0])
                steps, rows = store.sql("SELECT total_steps, (SELECT count(*) FROM metrics WHERE run_id = ?) "
                                        "FROM runs WHERE id = ?", [run_id, run_id])[0]
                out["end_to_end"][label] = {
                    "steps": steps, "metric_rows": rows, "s": summary(times), "first_run_s": first_run,
                    "its": {"median": steps / statistics.median(times), "best": steps / min(times)},
                    "owner_cpu_s": summary(owner_cpu),
                    "plain_alongside_s": summary(plain),
                    "plain_alongside_its": {"median": steps / statistics.median(plain), "best": steps / min(plain)},
                }
            # (c) launch -> first metric row, warm idle worker
            config = make_config(STRATEGY_SPECS["naive"], name="bench-launch")
            warm = []
            for _ in range(launches):
                wait_until(lambda: worker_ready(manager), 60)
                dt, run_id = first_metric_latency(store, manager, config)
                warm.append(dt)
                manager.wait(run_id, timeout=120)
            out["launch"]["warm_s"] = summary(warm)
        finally:
            manager.shutdown()
        # cold: a manager just created (its worker starts when the manager does)
        cold = []
        for _ in range(cold_launches):
            manager = RunManager(store, max_parallel=1, warm_workers=1)
            try:
                dt, run_id = first_metric_latency(store, manager, config)
                cold.append(dt)
                manager.wait(run_id, timeout=120)
            finally:
                manager.shutdown()
        if cold:
            out["launch"]["cold_s"] = summary(cold)
        store.close()
    return out


# ---- report ----------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def report(res: dict) -> str:
    lines = []
    add = lines.append
    m = res["meta"]
    add(f"CL Lab training speed: {m['workload']}")
    add(f"python {m['python']}, torch {m['torch']}, lightning {m['lightning']}, duckdb {m['duckdb']}, "
        f"{m['cpus']} CPUs, torch threads 1, repeats {m['repeats']} (median / best)")
    load = m["loadavg_before"][0], m["loadavg_after"][0]
    add(f"load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}"
        + ("  -- other processes were busy: figures are noisy, run again on a quiet machine"
           if load[0] > 0.7 * m["cpus"] / 2 else ""))
    add("")
    add(f"Targets: engine >= {TARGET_RATIO}x plain it/s; evaluation as fast as the plain loop's; "
        f"launch to first metric < {TARGET_LAUNCH_S} s")
    add("")
    add("Iterations per second (each run builds its scenario and model inside the timed region)")
    hdr = f"{'strategy':9} {'steps':>5} | {'plain it/s':>15} | {'engine in-proc it/s':>19} {'ratio':>5} | " \
          f"{'engine+manager+store it/s':>25} {'ratio':>5} | {'final acc p/e':>13}"
    add(hdr)
    add("-" * len(hdr))
    for label, r in res["in_process"].items():
        e2e = res["manager"]["end_to_end"].get(label)
        p, e = r["plain_its"], r["engine_its"]
        ratio = e["median"] / p["median"]
        cells = f"{label:9} {r['steps']:>5} | {p['median']:7.0f} / {p['best']:5.0f} | " \
                f"{e['median']:9.0f} / {e['best']:5.0f}   {ratio:4.2f}x | "
        if e2e:  # against the plain loop timed alongside the manager's runs
            ratio2 = e2e["its"]["median"] / e2e["plain_alongside_its"]["median"]
            cells += f"{e2e['its']['median']:15.0f} / {e2e['its']['best']:5.0f}   {ratio2:4.2f}x | "
            r["ratio_manager"] = ratio2
        else:
            cells += f"{'-':>25} {'':>5} | "
        r["ratio_in_process"] = ratio
        cells += f"{r['final_avg_acc']['plain']:.2f} / {r['final_avg_acc']['engine']:.2f}"
        add(cells)
    add("(ratios are of medians; the manager's is against the plain loop timed alongside it: "
        + ", ".join(f"{label} {e['plain_alongside_its']['median']:.0f} it/s"
                    for label, e in res["manager"]["end_to_end"].items()) + ")")
    add("Verdicts (median ratio vs 0.8x): " + ", ".join(
        f"{label} in-proc {verdict(r['ratio_in_process'] >= TARGET_RATIO)}"
        + (f", {label} manager {verdict(r['ratio_manager'] >= TARGET_RATIO)}" if "ratio_manager" in r else "")
        for label, r in res["in_process"].items()))
    add("Time per run, ms (median): " + "; ".join(
        f"{label} plain {r['plain_s']['median'] * 1000:.0f} / engine {r['engine_s']['median'] * 1000:.0f}"
        + (f" / manager {res['manager']['end_to_end'][label]['s']['median'] * 1000:.0f}"
           f" (first run in the worker {res['manager']['end_to_end'][label]['first_run_s'] * 1000:.0f};"
           f" store-side CPU {res['manager']['end_to_end'][label]['owner_cpu_s']['median'] * 1000:.0f})"
           if label in res["manager"]["end_to_end"] else "")
        for label, r in res["in_process"].items()))
    if "engine_ewc_small_fisher_batch" in res:
        f = res["engine_ewc_small_fisher_batch"]
        add(f"EWC with fisher_batch={PLAIN_FISHER_CHUNK} (the plain loop uses "
            f"{PLAIN_FISHER_CHUNK}): engine {f['engine_its']['median']:.0f} it/s, "
            f"{f['engine_its']['median'] / f['plain_its']['median']:.2f}x plain")
    add("")
    ev = res["evaluation"]
    pe, ee = ev["plain_ms"]["median"], ev["engine_ms"]["median"]
    add(f"Evaluation of all 5 test sets ({ev['samples']} samples), ms each (median / best): "
        f"plain per-task loop {pe:.3f} / {ev['plain_ms']['best']:.3f}; "
        f"ContinualEvaluation.evaluate {ee:.3f} / {ev['engine_ms']['best']:.3f}  "
        f"({ee / pe:.2f}x the plain time: {verdict(ee <= pe * 1.05)})")
    add("")
    mg = res["manager"]
    add(f"Launch -> first metric row in the store (worker start-up for a new manager: {mg['worker_start_s']:.2f} s)")
    w = mg["launch"]["warm_s"]
    add(f"  warm idle worker: median {w['median'] * 1000:.0f} ms, best {w['best'] * 1000:.0f} ms over "
        f"{len(w['all'])} launches ({verdict(w['median'] < TARGET_LAUNCH_S)})")
    if "cold_s" in mg["launch"]:
        c = mg["launch"]["cold_s"]
        add(f"  cold (manager just created): median {c['median']:.2f} s over {len(c['all'])} launches "
            f"({', '.join(f'{v:.2f}' for v in c['all'])} s) ({verdict(c['median'] < TARGET_LAUNCH_S)})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (default 5)")
    parser.add_argument("--launches", type=int, default=7, help="warm launches for the first-metric latency")
    parser.add_argument("--cold", type=int, default=2, help="cold launches (each starts a worker, 5-8 s)")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 3 launches, 1 cold launch")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.launches, args.cold = 3, 3, 1

    torch.set_num_threads(1)
    os.environ.setdefault("CL_LAB_THREADS", "1")  # the workers' torch threads (their default too)
    import duckdb
    import lightning

    started = time.perf_counter()
    res: dict = {"meta": {
        "workload": "5-task Split-Digits, MLP 64-256-256-10, batch 32, SGD lr 0.05, 5 epochs/task, eval every 10",
        "python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
        "duckdb": duckdb.__version__, "cpus": os.cpu_count(), "repeats": args.repeats,
        "targets": {"ratio": TARGET_RATIO, "evaluation": "engine ms <= plain ms", "launch_s": TARGET_LAUNCH_S},
        "loadavg_before": os.getloadavg(),
    }}
    print("timing the plain loop and the engine in this process ...", file=sys.stderr, flush=True)
    res["in_process"] = bench_in_process(args.repeats, STRATEGY_SPECS)
    res["engine_ewc_small_fisher_batch"] = bench_in_process(
        max(3, args.repeats - 2), {"ewc_small_fisher_batch": {**STRATEGY_SPECS["ewc"], "fisher_batch": PLAIN_FISHER_CHUNK}}
    )["ewc_small_fisher_batch"]
    print("timing the evaluation ...", file=sys.stderr, flush=True)
    res["evaluation"] = bench_evaluation()
    print("timing the run manager with a DuckDB store ...", file=sys.stderr, flush=True)
    res["manager"] = bench_manager(args.repeats, STRATEGY_SPECS, args.launches, args.cold)
    res["meta"]["bench_seconds"] = time.perf_counter() - started
    res["meta"]["loadavg_after"] = os.getloadavg()
    print(report(res))
    print(f"\n(benchmark took {res['meta']['bench_seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=float))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
