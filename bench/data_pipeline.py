"""The image data pipeline on CIFAR-10's real size and format (files generated here): reading the
pickles, building 5 tasks (no copies: peak memory should not grow), and preparing batches of 32 from the
uint8 pool (normalise; crop and flip) against plain indexing of a materialised float tensor, the cost
floor. ``python bench/data_pipeline.py`` (one thread)."""

import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
torch.set_num_threads(1)
root = Path(tempfile.mkdtemp())
f = root / "cifar-10-batches-py"; f.mkdir()
rng = np.random.default_rng(0)
for name, n in [(f"data_batch_{i}", 10000) for i in range(1, 6)] + [("test_batch", 10000)]:
    y = rng.integers(0, 10, n)
    (f / name).write_bytes(pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": y.tolist()}))
from engine.config import ScenarioConfig  # noqa: E402
from engine.scenarios import build_scenario, load_dataset  # noqa: E402
from engine.strategies import STRATEGIES  # noqa: E402
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


t0 = time.perf_counter()
load_dataset("cifar10", 0, 0.0, str(root))
t_load = time.perf_counter() - t0
before = rss()
t0 = time.perf_counter()
s = build_scenario(ScenarioConfig(dataset="cifar10", root=str(root), n_tasks=5))
t_build = time.perf_counter() - t0
print(f"read 60,000 CIFAR images: {t_load:.2f} s; build 5 tasks: {t_build*1000:.1f} ms, peak RSS +{rss()-before:.1f} MB")
e = STRATEGIES["naive"]().experiences(s)[0]
xfull = e.x
g = torch.Generator().manual_seed(0)
order = torch.randperm(len(xfull), generator=g)
t0 = time.perf_counter()
for i in range(0, len(order), 32):
    bx = xfull[order[i:i + 32]]
plain = (time.perf_counter() - t0) / len(range(0, len(order), 32))
print(f"plain indexing of a materialised float tensor: {plain * 1e6:.0f} us/batch")
for aug in ((), ("crop", "flip")):
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    n = sum(1 for _ in e.batches(32, g, "cpu", aug))
    dt = (time.perf_counter() - t0) / n
    print(f"batches of 32 from the uint8 pool, augment={'+'.join(aug) or 'none'}: {dt * 1e6:.0f} us/batch "
          f"({dt / plain:.2f}x plain)")
