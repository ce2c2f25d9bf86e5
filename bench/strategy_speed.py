"""Speed of strategies' engine steps against a plain PyTorch loop doing the same algorithm, in the same
process, on bench/train_speed.py's workload (5-task Split-Digits, MLP 64-256-256-10, batch 32, SGD,
5 epochs a task, continual evaluation every 10 steps). For now: EWC with each Fisher estimate
(per_sample: vmap'd per-sample gradients; minibatch: Avalanche's squared mini-batch gradients), both
sides skipping the Fisher after the last task. Target: engine it/s >= 0.8x the plain loop's.

Run from the repository root:  python bench/strategy_speed.py [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from train_speed import STRATEGY_SPECS, TARGET_RATIO, bench_in_process  # noqa: E402

SPECS = {label: STRATEGY_SPECS[label] for label in ("ewc", "ewc_minibatch")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats, plain and engine interleaved")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    res = bench_in_process(args.repeats, SPECS)
    print(f"strategy speed, engine vs plain PyTorch loop (median / best of {args.repeats}; load {load:.1f} on "
          f"{os.cpu_count()} CPUs)")
    for label, r in res.items():
        p, e = r["plain_its"], r["engine_its"]
        ratio = e["median"] / p["median"]
        print(f"{label:14} {r['steps']} steps | plain {p['median']:6.0f} / {p['best']:6.0f} it/s | engine "
              f"{e['median']:6.0f} / {e['best']:6.0f} it/s | {ratio:.2f}x ({'ok' if ratio >= TARGET_RATIO else 'MISS'}) "
              f"| final acc plain {r['final_avg_acc']['plain']:.3f} engine {r['final_avg_acc']['engine']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
