"""Speed of the analytic head (ACIL) in the engine against a plain PyTorch loop doing the same algorithm.

Workload: the default 5-task Split-Digits (class-incremental), MLP 64-256-256-10, batch 32, SGD lr 0.05,
5 epochs a task, evaluation of every task every 10 steps and at each task's end. ACIL: back-propagation on
task 1; at its last step the features freeze, a random ReLU buffer layer of ``--buffer`` units widens them
and the ridge head (gamma 1) is fitted on task 1 by recursive least squares (Woodbury, float64); each
later task updates the head batch by batch in its first epoch (its later epochs only compute the loss).
The plain loop writes all of that inline; both sides build the scenario inside the timed region and run
with ``torch.set_num_threads(1)``. Reported: iterations/s, median and best of ``--repeats`` (interleaved),
the ratio engine/plain (target >= 0.8) and both sides' final accuracies (they should agree closely).

Run from the repository root:  python bench/analytic_speed.py [--repeats 5] [--buffer 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from bench.train_speed import TARGET_RATIO, make_config, plain_evaluate  # noqa: E402
from engine.evaluation import BufferedSink  # noqa: E402
from engine.models import build_model  # noqa: E402
from engine.scenarios import build_scenario  # noqa: E402
from engine.training.train import train_run  # noqa: E402


class FinalAccSink(BufferedSink):
    """Discards the engine's metric batches but the last accuracies (a batch may end mid-evaluation)."""

    def __init__(self):
        super().__init__(run_id=0)
        self.acc: dict[int, float] = {}

    def emit(self, batch: dict) -> None:
        for metric, task, value in zip(batch["metric"], batch["task"], batch["value"]):
            if metric == "boundary_acc":
                self.acc[int(task)] = float(value)


def engine_run(config) -> tuple[int, list[float]]:
    sink = FinalAccSink()
    result = train_run(config, sink)
    if result.status != "finished":
        raise RuntimeError(f"engine run {result.status}: {result.error}")
    return result.step, [sink.acc[t] for t in sorted(sink.acc)]


def plain_run(config) -> tuple[int, list[float]]:
    """ACIL written plainly. Returns (steps, final accuracy per task)."""
    torch.manual_seed(config.seed)
    scenario = build_scenario(config.scenario)
    net = build_model(config.model, scenario.input_dim, scenario.n_classes)
    n_classes, gamma, width = scenario.n_classes, config.strategy["gamma"], config.strategy["buffer_size"]
    test_sets = [(t.test_x, t.test_y) for t in scenario.tasks]
    batches = torch.Generator().manual_seed(config.seed)
    bs, every, epochs = config.train.batch_size, config.eval.every, config.train.epochs_per_task
    model = net  # what is evaluated: the network, then the analytic predictor
    R = W = embed = None

    def update(X, Y):
        nonlocal R, W
        X, Y = X.double(), Y.double()
        RX = R @ X.T
        R = R - RX @ torch.linalg.solve(torch.eye(len(X), dtype=X.dtype) + X @ RX, RX.T)
        W = W + R @ X.T @ (Y - X @ W)

    step, accs = 0, plain_evaluate(model, test_sets)
    for k, task in enumerate(scenario.tasks):
        x, y = task.train_x, task.train_y
        optimizer = torch.optim.SGD(net.parameters(), lr=config.train.lr)
        for epoch in range(epochs):
            order = torch.randperm(len(y), generator=batches)
            for i in range(0, len(y), bs):
                idx = order[i:i + bs]
                xb, yb = x[idx], y[idx]
                if k == 0:
                    loss = F.cross_entropy(net(xb), yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                else:
                    with torch.no_grad():
                        X = embed(xb)
                        loss = F.cross_entropy((X.double() @ W).float(), yb)
                        if epoch == 0:
                            update(X, F.one_hot(yb, n_classes))
                step += 1
                loss.item()
                if k == 0 and epoch == epochs - 1 and i + bs >= len(y):  # task 1's last step: go analytic
                    net.features.requires_grad_(False).eval()
                    g = torch.Generator().manual_seed(config.seed)
                    d = net.head.in_features
                    if width:
                        buffer = nn.Linear(d, width)
                        with torch.no_grad():
                            buffer.weight.copy_(torch.randn(buffer.weight.shape, generator=g) / d ** 0.5)
                            buffer.bias.copy_(torch.randn(buffer.bias.shape, generator=g) * 0.1)
                        embed = nn.Sequential(net.features, buffer, nn.ReLU()).requires_grad_(False).eval()
                    else:
                        embed = net.features
                    R = torch.eye(width or d, dtype=torch.float64) / gamma
                    W = torch.zeros(width or d, n_classes, dtype=torch.float64)
                    with torch.no_grad():
                        for j in range(0, len(y), bs):
                            update(embed(x[j:j + bs]), F.one_hot(y[j:j + bs], n_classes))
                    model = nn.Sequential(embed, Analytic(lambda: W))
                if step % every == 0:
                    plain_evaluate(model, test_sets)
        accs = plain_evaluate(model, test_sets)
    return step, accs


class Analytic(nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def forward(self, X):
        return (X.double() @ self.weights()).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--buffer", type=int, default=1024, help="ACIL's buffer layer width")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = make_config({"name": "acil", "gamma": 1.0, "buffer_size": args.buffer}, name="bench-acil")
    plain_run(config), engine_run(config)  # warm-up (lazy imports, first optimizer)
    rates = {"plain": [], "engine": []}
    final = {}
    for _ in range(args.repeats):
        for side, fn in (("plain", plain_run), ("engine", engine_run)):
            start = time.perf_counter()
            steps, accs = fn(config)
            rates[side].append(steps / (time.perf_counter() - start))
            final[side] = accs
    med = {side: statistics.median(r) for side, r in rates.items()}
    print(f"ACIL (buffer {args.buffer}, gamma 1), 5-task Split-Digits, MLP 64-256-256-10, batch 32, "
          f"5 epochs a task, eval every 10, 1 thread, {args.repeats} repeats")
    for side in ("plain", "engine"):
        print(f"  {side:6s}: median {med[side]:7.1f} it/s, best {max(rates[side]):7.1f} it/s, "
              f"final acc {[round(a, 3) for a in final[side]]}")
    ratio = med["engine"] / med["plain"]
    print(f"  engine/plain: {ratio:.2f}x (target >= {TARGET_RATIO}x): {'ok' if ratio >= TARGET_RATIO else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
