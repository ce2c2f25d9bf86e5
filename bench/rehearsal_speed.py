"""Training speed of the engine's rehearsal strategies against plain PyTorch loops doing the same algorithm.

Workload: bench/train_speed.py's (the default 5-task Split-Digits, class-incremental, MLP 64-256-256-10,
batch 32, SGD lr 0.05, 5 epochs a task, continual evaluation every 10 steps and at each task's end).
Strategies, each written here a second time in plain PyTorch, independently of engine/strategies:
  - Replay, reservoir policy (buffer 200, 32 replayed a step, the buffer fed every step);
  - Replay, class-balanced policy (buffer 200 filled at each task's end, split equally by class);
  - DER++ (buffer 200 of samples with their logits, alpha 0.1 x MSE and beta 0.5 x CE on two replayed batches);
  - A-GEM (200 samples, 40 a task filled at its end; reference gradient on 256 memory samples; projection).
Both sides build the scenario inside the timed region and run with ``torch.set_num_threads(1)``; the
repeats interleave plain and engine runs. The engine is ``train_run`` in this process with a discarding sink.

Run from the repository root:  python bench/rehearsal_speed.py [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.train_speed import TARGET_RATIO, DiscardSink, make_config, plain_evaluate, summary, timed  # noqa: E402
from engine.models import build_model  # noqa: E402
from engine.scenarios import build_scenario  # noqa: E402
from engine.training.train import train_run  # noqa: E402

SPECS = {
    "replay-reservoir": {"name": "replay", "buffer_size": 200, "replay_batch_size": 32, "policy": "reservoir"},
    "replay-class": {"name": "replay", "buffer_size": 200, "replay_batch_size": 32, "policy": "class_balanced"},
    "derpp": {"name": "derpp", "buffer_size": 200, "replay_batch_size": 32, "alpha": 0.1, "beta": 0.5},
    "agem": {"name": "agem", "buffer_size": 200, "replay_batch_size": 256},
}


class BoundarySink(DiscardSink):
    """Batches thrown away but the last boundary accuracies kept (a batch may end between metrics)."""

    def emit(self, batch: dict) -> None:
        rows = [i for i, m in enumerate(batch["metric"]) if m == "boundary_acc"]
        if rows:
            last = max(batch["step"][i] for i in rows)
            self.acc = [float(batch["value"][i]) for i in rows if batch["step"][i] == last]


def engine_run(config) -> tuple[int, list[float]]:
    sink = BoundarySink()
    result = train_run(config, sink)
    if result.status != "finished":
        raise RuntimeError(f"engine run {result.status}: {result.error}")
    return result.step, sink.acc


# ---- plain PyTorch -----------------------------------------------------------------------------------
class Reservoir:
    """Reservoir sampling of rows of several tensors (every sample seen has the same chance to stay)."""

    def __init__(self, size: int, g: torch.Generator):
        self.size, self.seen, self.g, self.rows = size, 0, g, None

    def add(self, *fields):
        if self.rows is None:
            self.rows = [torch.empty((self.size, *f.shape[1:]), dtype=f.dtype) for f in fields]
        count = self.seen + torch.arange(1, len(fields[0]) + 1)
        slot = torch.where(count <= self.size, count - 1, (torch.rand(len(count), generator=self.g) * count).long())
        keep = slot < self.size
        for row, f in zip(self.rows, fields):
            row[slot[keep]] = f[keep]
        self.seen += len(count)

    def __len__(self):
        return min(self.seen, self.size)

    def sample(self, n):
        idx = torch.randint(len(self), (min(n, len(self)),), generator=self.g)
        return [row[idx] for row in self.rows]


def balanced_by_class(x, y, size, g):
    """A random subset of (x, y) with ``size`` split equally among its classes (first classes get the rest)."""
    classes = y.unique().tolist()
    share = [size // len(classes) + (i < size % len(classes)) for i in range(len(classes))]
    keep = []
    for c, n in zip(classes, share):
        idx = (y == c).nonzero().squeeze(1)
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    keep = torch.cat(keep)
    return x[keep], y[keep]


def plain_run(config) -> tuple[int, list[float]]:
    spec = config.strategy
    kind = spec["name"] if spec["name"] != "replay" else f"replay-{spec['policy']}"
    torch.manual_seed(config.seed)
    scenario = build_scenario(config.scenario)
    net = build_model(config.model, scenario.input_dim, scenario.n_classes)
    test_sets = [(t.test_x, t.test_y) for t in scenario.tasks]
    batches, g = torch.Generator().manual_seed(config.seed), torch.Generator().manual_seed(config.seed)
    size, replay = spec["buffer_size"], spec["replay_batch_size"]
    stream = Reservoir(size, g)
    memory_x = memory_y = None  # the memories filled at task ends
    params = list(net.parameters())
    bs, every, step = config.train.batch_size, config.eval.every, 0
    evals = [plain_evaluate(net, test_sets)]
    for task in scenario.tasks:
        x, y = task.train_x, task.train_y
        optimizer = torch.optim.SGD(params, lr=config.train.lr)
        for _epoch in range(config.train.epochs_per_task):
            order = torch.randperm(len(y), generator=batches)
            for i in range(0, len(y), bs):
                idx = order[i:i + bs]
                xb, yb = x[idx], y[idx]
                if kind in ("replay-reservoir", "replay-class_balanced"):
                    if kind == "replay-reservoir" and len(stream):
                        rx, ry = stream.sample(replay)
                        xb_all, yb_all = torch.cat([xb, rx]), torch.cat([yb, ry])
                    elif kind == "replay-class_balanced" and memory_x is not None:
                        r = torch.randint(len(memory_y), (replay,), generator=g)
                        xb_all, yb_all = torch.cat([xb, memory_x[r]]), torch.cat([yb, memory_y[r]])
                    else:
                        xb_all, yb_all = xb, yb
                    loss = F.cross_entropy(net(xb_all), yb_all)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if kind == "replay-reservoir":
                        stream.add(xb, yb)
                elif kind == "derpp":
                    out = net(xb)
                    loss = F.cross_entropy(out, yb)
                    if len(stream):
                        bx, _, blogits = stream.sample(replay)
                        loss = loss + spec["alpha"] * F.mse_loss(net(bx), blogits)
                        bx, by, _ = stream.sample(replay)
                        loss = loss + spec["beta"] * F.cross_entropy(net(bx), by)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    stream.add(xb, yb, out.detach())
                else:  # agem
                    loss = F.cross_entropy(net(xb), yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if memory_x is not None:
                        r = torch.randint(len(memory_y), (min(replay, len(memory_y)),), generator=g)
                        ref = torch.autograd.grad(F.cross_entropy(net(memory_x[r]), memory_y[r]), params)
                        ref = torch.cat([v.reshape(-1) for v in ref])
                        grad = torch.cat([p.grad.reshape(-1) for p in params])
                        dot = grad @ ref
                        if dot < 0:
                            grad = grad - dot / (ref @ ref) * ref
                            for p, v in zip(params, grad.split([p.numel() for p in params])):
                                p.grad.copy_(v.view_as(p))
                    optimizer.step()
                step += 1
                value = loss.item()
                if not math.isfinite(value):
                    raise RuntimeError(f"plain loop diverged at step {step}")
                if step % every == 0:
                    evals.append(plain_evaluate(net, test_sets))
        evals.append(plain_evaluate(net, test_sets))
        if kind == "replay-class_balanced":  # all classes seen so far, rebalanced
            old = (memory_x, memory_y) if memory_x is not None else (x[:0], y[:0])
            memory_x, memory_y = balanced_by_class(torch.cat([old[0], x]), torch.cat([old[1], y]), size, g)
        elif kind == "agem":
            pick = torch.randperm(len(y), generator=g)[:size // len(scenario.tasks)]
            memory_x = x[pick] if memory_x is None else torch.cat([memory_x, x[pick]])
            memory_y = y[pick] if memory_y is None else torch.cat([memory_y, y[pick]])
    return step, evals[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=list(SPECS), help="a subset of the strategies")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {"loadavg_before": os.getloadavg()}
    for label in args.only or SPECS:
        config = make_config(SPECS[label])
        plain_run(config), engine_run(config)  # warm-up
        t_plain, t_engine, cpu_plain, cpu_engine = [], [], [], []
        for _ in range(args.repeats):
            c0 = time.process_time()
            dt, (steps, acc_p) = timed(plain_run, config)
            t_plain.append(dt)
            cpu_plain.append(time.process_time() - c0)
            c0 = time.process_time()
            dt, (steps_e, acc_e) = timed(engine_run, config)
            t_engine.append(dt)
            cpu_engine.append(time.process_time() - c0)
        assert steps == steps_e, (steps, steps_e)
        results[label] = {"steps": steps, "plain_s": summary(t_plain), "engine_s": summary(t_engine),
                          "plain_cpu_s": summary(cpu_plain), "engine_cpu_s": summary(cpu_engine),
                          "ratio": statistics.median(t_plain) / statistics.median(t_engine),
                          "ratio_best": min(t_plain) / min(t_engine),
                          "ratio_cpu": statistics.median(cpu_plain) / statistics.median(cpu_engine),
                          "final_avg_acc": {"plain": statistics.mean(acc_p), "engine": statistics.mean(acc_e)}}
    results["loadavg_after"] = os.getloadavg()
    print(f"Rehearsal strategies, engine vs plain PyTorch (5-task Split-Digits, MLP 256-256, batch 32, 5 epochs, "
          f"eval every 10; torch threads 1; {args.repeats} repeats; load {results['loadavg_before'][0]:.2f} / "
          f"{results['loadavg_after'][0]:.2f})")
    print(f"{'strategy':17} {'steps':>5} | {'plain it/s':>10} | {'engine it/s':>11} | {'ratio':>5} (best) | "
          f"CPU-time ratio | acc plain/engine")
    for label, r in results.items():
        if not isinstance(r, dict):
            continue
        p, e = r["steps"] / r["plain_s"]["median"], r["steps"] / r["engine_s"]["median"]
        verdict = "ok" if r["ratio"] >= TARGET_RATIO else "MISS"
        print(f"{label:17} {r['steps']:>5} | {p:10.0f} | {e:11.0f} | "
              f"{r['ratio']:4.2f}x ({r['ratio_best']:4.2f}x) {verdict} | "
              f"{r['ratio_cpu']:13.2f}x | {r['final_avg_acc']['plain']:.2f} / {r['final_avg_acc']['engine']:.2f}")
    print("(ratios: plain time / engine time, medians; >= 0.8 is the target. The CPU-time ratio uses this "
          "process's CPU seconds, steadier than wall time when other processes share the cores)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
