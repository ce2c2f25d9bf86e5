"""Fuzzed config and sweep files through the lab's real entry (``load_config``, ``load_sweep``).

Seeded: 1,000 config files and 300 sweep files (by default), each a valid document with one to three
fields replaced by a hostile value (wrong types, huge / infinite / NaN numbers, unhashable names,
deep nesting, long texts), or a hostile text (alias bombs, deep brackets, invalid UTF-8, huge
integers, oversized files, YAML tags), plus the reproducers of issue 8. Every file is written to a
temporary folder and read by path, as ``python -m engine run FILE`` reads it.

    python bench/fuzz_inputs.py [--configs 1000] [--sweeps 300] [--seed 0]

Reported: crashes (any exception but ConfigError), time-outs (a case still running after
``--timeout`` s of CPU time), the max and median time per case (wall and CPU; the 2 s target is
checked on CPU time, as the wall time on a shared machine grows with the load average printed), the max memory per case (tracemalloc peak, in a
second pass: tracing slows the timing pass), the longest problem line and the most lines.
Targets (issue 8): 0 crashes, 0 time-outs, every case under 2 s and 200 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import ConfigError, load_config  # noqa: E402
from engine.core.limits import limits  # noqa: E402
from engine.sweeps.sweep import load_sweep  # noqa: E402

CONFIG = {"name": "fuzz", "seed": 0,
          "scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5, "class_seed": None, "seed": 0,
                       "test_size": 0.25, "tasks": None},
          "model": {"name": "mlp", "hidden": [64, 64]},
          "strategy": {"name": "replay", "buffer_size": 200, "replay_batch_size": 32},
          "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 32,
                    "epochs_per_task": 1, "save_weights": False},
          "eval": {"every": 10, "subset": None}}
SPACE = {"train.lr": {"log_uniform": [0.001, 0.1]}, "strategy.buffer_size": {"int": [10, 500]},
         "strategy.name": {"choice": ["naive", "replay", "ewc"]}}
SWEEPS = [
    {"name": "g", "base": {"scenario": {"n_tasks": 5}, "strategy": {"name": "naive"}},
     "grid": {"strategy.name": ["naive", "replay"], "train.lr": [0.01, 0.05]}, "seeds": [0, 1]},
    {"name": "r", "base": {"train": {"epochs_per_task": 1}},
     "random": {"samples": 4, "seed": 3, "space": SPACE}, "seeds": [0]},
    {"name": "s", "base": {}, "search": {"trials": 6, "objectives": ["acc"], "sampler": "tpe", "seed": 1,
                                        "space": SPACE}, "seeds": [0]},
    {"name": "rc", "base": {"train": {"epochs_per_task": 1}},
     "reality_check": {"metric": "acc", "strategies": ["naive", "replay"],
                       "tune": {"scenario": {"dataset": "digits"}, "grid": {"train.lr": [0.01, 0.05]}, "seeds": [0]},
                       "test": {"scenario": {"dataset": "mnist1d"}, "seeds": [5]}}},
]


class Raw(str):
    """Text written into the YAML as it is (a 5,000-digit integer, ``.inf``)."""


def to_yaml(value) -> str:
    """Flow-style YAML of a value (JSON-like), where ``Raw`` goes in as written."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_yaml(k)}: {to_yaml(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(to_yaml(v) for v in value) + "]"


def alias_bomb(levels: int, width: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def hostile(rng: random.Random, depth: int = 0):
    """A value a field should refuse, or accept, without harm."""
    kind = rng.randrange(22)
    if kind == 0:
        return Raw("9" * rng.choice([20, 101, 4301, 5000, 20000]))
    if kind == 1:
        return Raw(rng.choice([".inf", "-.inf", ".nan", "1e400", "1.0e+400", "-1e-400", "1e-3", "0x" + "f" * 90]))
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice([0, -1, 1, 2**31, 2**32, 2**32 - 1, 2**63, -2**63, 10**30])
    if kind == 4:
        return rng.choice([0.0, -0.0, 1e-300, 1e300, -5.5, 0.5, 1e9])
    if kind == 5:
        return "x" * rng.choice([0, 1, 300, 100_000])
    if kind == 6:
        return rng.choice(["replay", "naive", "ewc", "lwf", "joint", "digits", "mnist1d", "class", "task",
                           "domain", "sgd", "adam", "mlp", "acc", "tpe", "nsga2", "\u00e9\u4e2d\U0001f600", "\t\n"])
    if kind == 7:
        return {}
    if kind == 8:
        return []
    if kind == 9:
        return {"name": rng.choice([[], {}, ["replay"], {"a": 1}, 1, None])}
    if kind == 10:
        return Raw("[" * rng.choice([31, 33, 200, 1000, 20_000]) + "]" * rng.choice([0, 31, 33, 200]))
    if kind == 11:
        return Raw("{a: " * rng.choice([31, 33, 500]) + "1" + "}" * rng.choice([31, 33, 500]))
    if kind == 12:
        return [rng.randrange(100) for _ in range(rng.choice([1, 100, 20_000, 60_000]))]
    if kind == 13:
        return Raw(rng.choice(["!!python/object:os.system 1", "!!binary aGVsbG8=", "2001-12-14", "2001-13-45",
                               "!!set {a, b}", "1:2:3", "!!float x", "!!int x", "~", "!!timestamp 99999-1-1"]))
    if kind == 14:
        return Raw("*nope")
    if kind == 15:
        return Raw("&anchor [1, 2]")
    if kind == 16 and depth < 3:
        return [hostile(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 17 and depth < 3:
        return {to_key(rng): hostile(rng, depth + 1) for _ in range(rng.randrange(4))}
    if kind == 18:
        return {str(i): i for i in range(rng.choice([5, 5000]))}
    if kind == 19:
        return Raw("{[1]: 2}")
    if kind == 20:
        return [[1, 2]] * rng.choice([2, 50])
    return rng.choice([1, 5, 10, 32, 0.05, 0.9, 100, 10_000, 65_536, 100_000])


def to_key(rng: random.Random) -> str:
    return rng.choice(["name", "seed", "lr", "x" * 5000, "train.lr", "strategy.name", "strategy.buffer_size",
                       "model.hidden", "seeds", "grid", "space", "choice", "uniform", "int", "", "a.b.c"])


def paths(doc, prefix=()):
    """Every (path) to a value in a nested dict/list."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, prefix + (i,))
    return out


def mutate(doc, rng: random.Random):
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randint(1, 3)):
        choices = paths(doc)
        path = rng.choice(choices)
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        if isinstance(parent, dict) and rng.random() < 0.15:
            parent[to_key(rng)] = hostile(rng)
        else:
            parent[path[-1]] = hostile(rng)
    return doc


def raw_case(rng: random.Random, valid: dict) -> bytes:
    """A hostile text rather than a hostile value."""
    text = to_yaml(valid)
    kind = rng.randrange(9)
    if kind == 0:
        return alias_bomb(rng.choice([3, 6, 9, 12])).encode()
    if kind == 1:
        return ("[" * rng.choice([100, 1000, 100_000])).encode()
    if kind == 2:
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 3)):
            data.insert(rng.randrange(len(data)), rng.choice([0xff, 0xfe, 0xc3, 0x80, 0xed]))
        return bytes(data)
    if kind == 3:
        return ("seed: " + "9" * rng.choice([5000, 100_000]) + "\n").encode()
    if kind == 4:
        return ("name: x\n# " + "x" * (limits().max_input_bytes + 10) + "\n").encode()
    if kind == 5:
        return (text + "\n---\n" + text).encode()
    if kind == 6:
        return b"\xef\xbb\xbf" + text.encode() + rng.choice([b"\x00", b"\x07", b"\t: x", b"\n  bad: [", b""])
    if kind == 7:
        cut = rng.randrange(len(text))
        return text[:cut].encode()
    return ("- " + "\n- ".join(["x"] * rng.choice([10, 60_000]))).encode()


REPRODUCERS = {
    "config": [b"strategy: {name: [replay]}\n", b"strategy: {name: {}}\n", b"[" * 1000, b"name: \xff\xfe\n",
               ("seed: " + "9" * 5000 + "\n").encode(), b"train: {lr: .inf}\n", b"train: {lr: 1e400}\n",
               b"seed: 4294967296\n", b"train: {epochs_per_task: true}\n", alias_bomb(10).encode(),
               ("name: x\nmodel: " + "[" * 1000 + "\n").encode()],
    "sweep": [b"base: {strategy: [1]}\ngrid: {train.lr: [0.1]}\n", alias_bomb(9).encode(),
              b"random: {samples: 1000, seed: 0, space: {train.lr: {uniform: [0.01, 0.1]}}}\nseeds: ["
              + ", ".join(map(str, range(1000))).encode() + b"]\n"],
}


def cases(kind: str, n: int, rng: random.Random) -> list[bytes]:
    out = list(REPRODUCERS[kind])
    while len(out) < n:
        valid = CONFIG if kind == "config" else rng.choice(SWEEPS)
        if rng.random() < 0.25:
            out.append(raw_case(rng, valid))
        else:
            out.append(to_yaml(mutate(valid, rng)).encode())
    return out[:n]


class TimedOut(Exception):
    pass


def _alarm(signum, frame):
    raise TimedOut()


def read_case(kind: str, path: Path, timeout: float) -> tuple[str, str]:
    """('ok' | 'refused' | 'crash' | 'timeout', detail). The time-out counts this process's CPU time
    (ITIMER_PROF): on a machine shared with other work, wall time says more about the others."""
    signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, timeout)
    try:
        (load_config if kind == "config" else load_sweep)(path)
        return "ok", ""
    except ConfigError as err:
        return "refused", "\n".join(err.problems)
    except TimedOut:
        return "timeout", ""
    except Exception as err:  # noqa: BLE001 - a crash is what this counts
        return "crash", f"{type(err).__name__}: {str(err)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def run(kind: str, files: list[Path], timeout: float) -> dict:
    times, cpu, outcomes, peaks = [], [], [], []
    for path in files:
        start, start_cpu = time.perf_counter(), time.process_time()
        outcomes.append(read_case(kind, path, timeout))
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    tracemalloc.start()
    for path in files:
        tracemalloc.reset_peak()
        read_case(kind, path, timeout)
        peaks.append(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    lines = [line for o, d in outcomes if o == "refused" for line in d.splitlines()]
    return {
        "cases": len(files), "ok": sum(o == "ok" for o, _ in outcomes),
        "refused": sum(o == "refused" for o, _ in outcomes),
        "crashes": [(files[i].name, d) for i, (o, d) in enumerate(outcomes) if o == "crash"],
        "timeouts": [files[i].name for i, (o, _) in enumerate(outcomes) if o == "timeout"],
        "max_s": max(times), "median_s": statistics.median(times), "slowest": files[times.index(max(times))].name,
        "max_cpu_s": max(cpu), "median_cpu_s": statistics.median(cpu),
        "max_mb": max(peaks) / 2**20, "largest": files[peaks.index(max(peaks))].name,
        "longest_line": max(lines, key=len) if lines else "", "most_lines": max(
            (len(d.splitlines()) for o, d in outcomes if o == "refused"), default=0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=int, default=1000)
    ap.add_argument("--sweeps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="CPU seconds before a case counts as a time-out")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"limits: {limits()}", flush=True)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times grow with it)")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for kind, n in (("config", args.configs), ("sweep", args.sweeps)):
            files = []
            for i, data in enumerate(cases(kind, n, rng)):
                path = Path(tmp) / f"{kind}-{i:04d}.yaml"
                path.write_bytes(data)
                files.append(path)
            r = run(kind, files, args.timeout)
            print(f"\n{kind} files: {r['cases']} ({r['ok']} accepted, {r['refused']} refused), "
                  f"{len(r['crashes'])} crashes, {len(r['timeouts'])} time-outs")
            print(f"  time per case: median {1000 * r['median_s']:.1f} ms, max {1000 * r['max_s']:.0f} ms "
                  f"({r['slowest']}, {os.path.getsize(Path(tmp) / r['slowest']):,} bytes); CPU time: median "
                  f"{1000 * r['median_cpu_s']:.2f} ms, max {1000 * r['max_cpu_s']:.0f} ms (the CPU clock may tick coarsely)")
            print(f"  memory per case (tracemalloc peak): max {r['max_mb']:.1f} MB ({r['largest']})")
            print(f"  longest problem line ({len(r['longest_line'])} chars): {r['longest_line']}")
            print(f"  most problem lines in one case: {r['most_lines']}")
            for name, detail in r["crashes"][:20]:
                print(f"  CRASH {name}: {detail}")
            for name in r["timeouts"][:20]:
                print(f"  TIME-OUT {name}")
            failed |= bool(r["crashes"] or r["timeouts"]) or r["max_cpu_s"] > 2 or r["max_mb"] > 200
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("\ntargets (0 crashes, 0 time-outs, each case under 2 s and 200 MB):", "MISSED" if failed else "met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
