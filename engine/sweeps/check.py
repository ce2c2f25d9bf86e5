"""Check a sweep in a child process with limits: ``python -m engine.sweeps.check`` reads the sweep's text
(YAML or JSON) on stdin, parses, validates and expands it, and answers one JSON line on stdout:
``{"ok": true, "name", "kind", "runs", "sweep": <the parsed sweep>}`` or ``{"ok": false, "problems": [...]}``.

The Launch page runs in the lab process, which owns the database and the runs: a pasted sweep must
not be parsed or expanded there without bounds (an alias bomb or a huge random sweep held the page at
6.9 GB). The child's address space is capped (``RLIMIT_AS``: its imports plus
``limits().sweep_check_memory_mb``) and its CPU time too, and the parent kills it after
``limits().sweep_check_seconds``. A sweep the child accepted is one whose parsing and expansion fit
those bounds, so the lab may validate it again and queue it (``launch_sweep``), which also checks
every run's cost and the weights budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SweepCheck:
    ok: bool
    problems: list[str] = field(default_factory=list)
    name: str = ""
    kind: str = ""
    runs: int = 0
    sweep: dict | None = None   # the parsed sweep, plain JSON: what launch_sweep takes


def check_sweep_text(text: str) -> SweepCheck:
    """Run the check in a child process; never raises for what the text holds."""
    from engine.core.limits import limits

    lim = limits()
    data = text.encode("utf-8", errors="replace")
    if len(data) > lim.max_input_bytes:
        return SweepCheck(False, [f"sweep: {len(data):,} bytes; at most {lim.max_input_bytes:,} (limits.max_input_bytes)"])
    try:
        done = subprocess.run([sys.executable, "-m", "engine.sweeps.check"], input=data, capture_output=True,
                              cwd=PROJECT_ROOT, timeout=lim.sweep_check_seconds)
    except subprocess.TimeoutExpired:
        return SweepCheck(False, [f"sweep: checking it took more than {lim.sweep_check_seconds:g} s "
                                  "(limits.sweep_check_seconds); make it smaller"])
    if done.returncode == -24:  # SIGXCPU: its CPU time ran out
        return SweepCheck(False, [f"sweep: checking it took more than {lim.sweep_check_seconds:g} s of CPU "
                                  "(limits.sweep_check_seconds); make it smaller"])
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return SweepCheck(False, [f"sweep: the check stopped before it answered ({tail[0][:200]}): it may have "
                                  f"needed more than {lim.sweep_check_memory_mb} MB (limits.sweep_check_memory_mb)"])
    if not answer.get("ok"):
        return SweepCheck(False, [str(p) for p in answer.get("problems", [])] or ["sweep: refused"])
    return SweepCheck(True, [], answer["name"], answer["kind"], int(answer["runs"]), answer["sweep"])


def _limit_resources(memory_mb: int, seconds: float) -> None:
    import resource

    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()  # the address space the imports took
    cap = used + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu = int(seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _check(text: bytes) -> dict:
    from engine.config import ConfigError
    from engine.core.inputs import load_yaml
    from engine.core.limits import limits
    from engine.sweeps.sweep import parse_sweep, planned_runs

    lim = limits()
    if len(text) > lim.max_input_bytes:
        return {"ok": False, "problems": [f"sweep: {len(text):,} bytes; at most {lim.max_input_bytes:,} "
                                          "(limits.max_input_bytes)"]}
    try:
        data = load_yaml(text, "sweep")  # the guarded entry: UTF-8, no aliases, bounded depth and size
    except ConfigError as err:
        return {"ok": False, "problems": err.problems}
    try:
        spec = parse_sweep(data)
        runs = planned_runs(spec)  # expands a grid or random sweep (a reality check: its tune phase)
    except ConfigError as err:
        return {"ok": False, "problems": err.problems}
    sweep = json.loads(json.dumps(data, default=str))
    size = len(json.dumps(sweep))
    if size > 4 * lim.max_input_bytes:  # what aliases made of a small text
        return {"ok": False, "problems": [f"sweep: its YAML expands to {size:,} bytes; at most "
                                          f"{4 * lim.max_input_bytes:,} (4 x limits.max_input_bytes)"]}
    return {"ok": True, "name": spec.name, "kind": spec.kind, "runs": runs, "sweep": sweep}


def main() -> int:
    from engine.core.limits import limits
    import engine.sweeps.sweep  # noqa: F401  (imports count before the limit)
    import engine.core.inputs  # noqa: F401

    lim = limits()
    _limit_resources(lim.sweep_check_memory_mb, lim.sweep_check_seconds)
    text = sys.stdin.buffer.read(lim.max_input_bytes + 1)
    try:
        answer = _check(text)
    except MemoryError:
        answer = {"ok": False, "problems": [f"sweep: checking it needed more than {lim.sweep_check_memory_mb} MB "
                                            "(limits.sweep_check_memory_mb); make it smaller"]}
    except RecursionError:
        answer = {"ok": False, "problems": ["sweep: nested too deeply"]}
    except Exception as err:  # one line, never a traceback on the page
        answer = {"ok": False, "problems": [f"sweep: cannot be checked ({type(err).__name__}: {str(err)[:200]})"]}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
