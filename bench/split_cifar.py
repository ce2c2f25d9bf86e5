"""Split-CIFAR-10 through the engine against a plain PyTorch loop doing the same work.

Workload: 5 class-incremental tasks of 2 classes, the reduced ResNet-18 (nf = 20, 1.09 M parameters),
batch 32, SGD lr 0.05, 1 epoch a task, continual evaluation of every task's test set every 50 steps
(plus a full evaluation before training and at each task's end, as the engine does), evaluation in
chunks of 512. The data has CIFAR-10's real size and format: the script writes
``cifar-10-batches-py/data_batch_1..5`` and ``test_batch`` (pickled dicts, ``b"data"`` N x 3072 uint8,
``b"labels"``) of random images into a temporary folder and reads them back.

The files are read by the engine's own ``cifar10`` reader into its scenario (one uint8 pool, tasks as
index views, normalised per batch); both sides train on that same scenario, the engine through
``train_run(..., scenario=...)`` and the plain loop on each task's tensors, taken once.

Measured, each side timed from model construction to the end of the last evaluation:
  1. iterations/s of the plain loop and of the engine (``train_run`` with a sink that discards), and
     their ratio (target on a GPU: engine >= 0.9x plain);
  2. the cost of continual evaluation every 50 steps: each side run again with only the boundary
     evaluations (target: evaluation every 50 steps adds <= 10% to the engine's time);
  3. on a GPU, its utilisation sampled with nvidia-smi every 0.1 s during each run.
The CPU figures use a short budget (``--train-per-task``, ``--test-per-task``: the first N training
and test images of each task); on a GPU the defaults are the whole set.

Run from the repository root:
  python bench/split_cifar.py --train-per-task 1600 --test-per-task 200      # CPU here, about 5 min
  python bench/split_cifar.py --device cuda                                   # a GPU, the full set
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.config import ScenarioConfig, parse_config  # noqa: E402
from engine.evaluation import BufferedSink  # noqa: E402
from engine.models import MODELS  # noqa: E402
from engine.scenarios import Samples, Scenario, TaskData, build_scenario  # noqa: E402
from engine.training.train import train_run  # noqa: E402

TARGET_RATIO = 0.9
TARGET_EVAL_OVERHEAD = 0.10
N_TASKS, EVERY, BATCH, LR, EVAL_BATCH = 5, 50, 32, 0.05, 512
NO_EVAL = 10 ** 9  # eval.every for the runs with only the boundary evaluations


# ---- data: files in CIFAR-10's format, read back -------------------------------------------------
def write_cifar10(root: Path, seed: int = 0) -> Path:
    """cifar-10-batches-py as torchvision unpacks it: 5 training batches of 10,000 and a test batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, 10_000).tolist(),
                 b"data": rng.integers(0, 256, (10_000, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(10_000)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{k}".encode() for k in range(10)], b"num_vis": 3072,
                     b"num_cases_per_batch": 10_000}, f, protocol=2)
    return folder


def split_cifar(root: Path, train_per_task: int | None, test_per_task: int | None) -> Scenario:
    """5 tasks of 2 classes, read from the files by the engine's cifar10 reader; optionally the first
    N training and test images of each task."""
    scenario = build_scenario(ScenarioConfig(dataset="cifar10", root=str(root), n_tasks=N_TASKS))
    first = lambda s, n: Samples(s.pool, s.index[:n], s.domain[:n])  # noqa: E731
    scenario.tasks = [TaskData(t.classes, first(t.train, train_per_task), first(t.test, test_per_task))
                      for t in scenario.tasks]
    return scenario


# ---- the plain PyTorch loop ---------------------------------------------------------------------
def plain_run(scenario: Scenario, device: torch.device, every: int, precision: str, seed: int = 0) -> int:
    """The same work as the engine: a fresh SGD a task, shuffled batches from tensors on the device,
    losses kept on the device, every task's test set evaluated in chunks every ``every`` steps and at
    step 0 and each task's end."""
    torch.manual_seed(seed)
    net = MODELS["resnet18_reduced"]((3, 32, 32), 10).to(device)
    g = torch.Generator().manual_seed(seed)
    sets = [(t.test_x.to(device), t.test_y.to(device)) for t in scenario.tasks]
    amp = dict(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16-mixed" else torch.float16,
               enabled=precision != "32")
    losses: list[torch.Tensor] = []

    def evaluate():
        net.eval()
        out = []
        with torch.inference_mode(), torch.autocast(**amp):
            for x, y in sets:
                correct = total_loss = 0.0
                for i in range(0, len(y), EVAL_BATCH):
                    logits = net(x[i:i + EVAL_BATCH]).float()
                    correct = correct + (logits.argmax(1) == y[i:i + EVAL_BATCH]).sum()
                    total_loss = total_loss + F.cross_entropy(logits, y[i:i + EVAL_BATCH], reduction="sum")
                out.append((correct / len(y), total_loss / len(y)))
        accs = torch.stack([torch.stack(v) for v in out]).tolist()  # one read back
        net.train()
        return accs

    evaluate()
    step = 0
    for task in scenario.tasks:
        x, y = task.train_x.to(device), task.train_y.to(device)
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        order = torch.randperm(len(y), generator=g).to(device)
        for i in range(0, len(y), BATCH):
            idx = order[i:i + BATCH]
            with torch.autocast(**amp):
                loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            step += 1
            if step % every == 0:
                torch.stack(losses).tolist()  # the losses read back, as the engine does
                losses.clear()
                evaluate()
        torch.stack(losses).tolist() if losses else None
        losses.clear()
        evaluate()
    return step


# ---- the engine -----------------------------------------------------------------------------------
class DiscardSink(BufferedSink):
    def __init__(self):
        super().__init__(run_id=0, max_rows=10 ** 9, max_seconds=10 ** 9)

    def emit(self, batch):
        pass


def engine_run(scenario: Scenario, device: str, every: int, precision: str, seed: int = 0) -> int:
    config = parse_config({
        "name": "split-cifar-bench", "seed": seed, "scenario": {"n_tasks": N_TASKS},
        "model": {"name": "resnet18_reduced"}, "strategy": {"name": "naive"},
        "train": {"optimizer": "sgd", "lr": LR, "batch_size": BATCH, "epochs_per_task": 1, "device": device,
                  "precision": precision, "weights": "none", "augment": "none"},  # the plain loop does not augment
        "eval": {"every": every, "batch_size": EVAL_BATCH},
    }, input_shape=(3, 32, 32))
    result = train_run(config, DiscardSink(), scenario=scenario)
    if result.status != "finished":
        raise RuntimeError(f"engine run {result.status}: {result.error}")
    return result.step


# ---- timing -----------------------------------------------------------------------------------------
class GpuSampler:
    """GPU utilisation (%) sampled with nvidia-smi every 0.1 s while running."""

    def __init__(self, index: int):
        self.index, self.samples, self._stop = index, [], threading.Event()
        self.exe = shutil.which("nvidia-smi")

    def __enter__(self):
        if self.exe:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run([self.exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", str(self.index)], capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.1)

    def __exit__(self, *exc):
        self._stop.set()
        if self.exe:
            self._thread.join()

    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def timed(fn, device: torch.device, *args) -> tuple[float, int, float | None]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    with GpuSampler(device.index or 0) if device.type == "cuda" else _Nothing() as sampler:
        t0 = time.perf_counter()
        steps = fn(*args)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return dt, steps, sampler.mean() if device.type == "cuda" else None


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed", "16-mixed"])
    parser.add_argument("--train-per-task", type=int, default=None, help="first N training images a task (default all)")
    parser.add_argument("--test-per-task", type=int, default=None, help="first N test images a task (default all)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats, plain and engine interleaved")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "cuda" else "cuda:0")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the engine's setting without train.deterministic

    with tempfile.TemporaryDirectory(prefix="split-cifar-") as tmp:
        t0 = time.perf_counter()
        write_cifar10(Path(tmp))
        scenario = split_cifar(Path(tmp), args.train_per_task, args.test_per_task)
        data_s = time.perf_counter() - t0
    n_train = sum(len(t.train_y) for t in scenario.tasks)
    n_test = sum(len(t.test_y) for t in scenario.tasks)
    print(f"data: CIFAR-10 files written and read in {data_s:.1f} s; {n_train} training and {n_test} test "
          f"images in use; device {device}, precision {args.precision}", file=sys.stderr, flush=True)

    sides = {"plain": lambda every: plain_run(scenario, device, every, args.precision),
             "engine": lambda every: engine_run(scenario, str(device), every, args.precision)}
    # warm-up: lazy imports, the allocator, cuDNN's algorithm search (one task's worth)
    warm = Scenario(scenario.dataset, "class", 10, (3, 32, 32), scenario.tasks[:1], augment=())
    plain_run(warm, device, EVERY, args.precision)
    engine_run(warm, str(device), EVERY, args.precision)

    res = {"meta": {"workload": "5-task Split-CIFAR-10 (generated images in CIFAR-10's files), reduced ResNet-18, "
                                f"batch {BATCH}, SGD lr {LR}, 1 epoch a task, eval every {EVERY} steps in chunks "
                                f"of {EVAL_BATCH}",
                    "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "precision": args.precision, "train_images": n_train, "test_images": n_test,
                    "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "threads": args.threads, "repeats": args.repeats, "loadavg_before": os.getloadavg()}}
    times = {(side, mode): [] for side in sides for mode in ("eval", "no_eval")}
    utilisation = {key: [] for key in times}
    steps = None
    for _ in range(args.repeats):
        for mode, every in (("eval", EVERY), ("no_eval", NO_EVAL)):
            for side, fn in sides.items():
                dt, n, util = timed(fn, device, every)
                steps = n if steps is None else steps
                assert n == steps, (side, n, steps)
                times[side, mode].append(dt)
                if util is not None:
                    utilisation[side, mode].append(util)
                print(f"  {side:6} {mode:7} {dt:7.2f} s  {n / dt:7.1f} it/s"
                      + (f"  GPU {util:.0f}%" if util is not None else ""), file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    res["steps"] = steps
    res["seconds"] = {f"{s}_{m}": v for (s, m), v in times.items()}
    res["its"] = {f"{s}_{m}": steps / med[s, m] for (s, m) in med}
    res["ratio_engine_vs_plain"] = {m: med["plain", m] / med["engine", m] for m in ("eval", "no_eval")}
    res["eval_overhead"] = {s: med[s, "eval"] / med[s, "no_eval"] - 1 for s in sides}
    res["gpu_utilisation_pct"] = {f"{s}_{m}": statistics.mean(v) for (s, m), v in utilisation.items() if v}
    res["meta"]["loadavg_after"] = os.getloadavg()

    m = res["meta"]
    print(f"Split-CIFAR-10 speed: {m['workload']}")
    print(f"device {m['device']}{' (' + m['gpu'] + ')' if m['gpu'] else ''}, precision {m['precision']}, torch "
          f"{m['torch']}, {m['cpus']} CPUs, {m['threads']} thread(s), {steps} steps, {n_train} train / {n_test} "
          f"test images, repeats {args.repeats}, load {m['loadavg_before'][0]:.1f} -> {m['loadavg_after'][0]:.1f}")
    for mode in ("eval", "no_eval"):
        label = f"eval every {EVERY}" if mode == "eval" else "boundary evals only"
        ratio = res["ratio_engine_vs_plain"][mode]
        print(f"  {label:20}: plain {res['its'][f'plain_{mode}']:7.1f} it/s, engine {res['its'][f'engine_{mode}']:7.1f} "
              f"it/s, ratio {ratio:.2f}x (target >= {TARGET_RATIO}x on a GPU: "
              f"{'ok' if ratio >= TARGET_RATIO else 'MISS'})")
    for side in sides:
        over = res["eval_overhead"][side]
        print(f"  evaluation every {EVERY} steps adds {over * 100:5.1f}% to the {side} run's time "
              f"(target <= {TARGET_EVAL_OVERHEAD * 100:.0f}%: {'ok' if over <= TARGET_EVAL_OVERHEAD else 'MISS'})")
    if res["gpu_utilisation_pct"]:
        print("  GPU utilisation (mean of nvidia-smi samples): " + ", ".join(
            f"{k} {v:.0f}%" for k, v in res["gpu_utilisation_pct"].items()))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
