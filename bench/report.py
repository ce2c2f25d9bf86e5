"""How long a report takes to build, and how large it is.

Two runs: the Home demo (configs/replay-demo.yaml, trained here for real) and a synthetic run of
``--points`` evaluations per task (bench/run_page.py's fill(): 5 tasks, evaluation every step; at
1,000,000 that is 11 M metric rows). For each: the content (queries, summary metrics, charts to
Vega-Lite), the HTML, the PDF and the bundle, timed warm (median of ``--repeat``) after one cold
build, and the size of each file.

    python bench/report.py [--points 1000000] [--repeat 3]

Targets (issue 12): under 3 s to build the HTML report, under 5 MB of HTML.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run_page import fill  # noqa: E402
from engine.report import build_report  # noqa: E402
from engine.report.bundle import bundle_bytes  # noqa: E402
from engine.report.html import render_html  # noqa: E402
from engine.report.pdf import render_pdf  # noqa: E402
from store import Store  # noqa: E402


def build(store: Store, run_id: int) -> tuple[dict[str, float], dict[str, int]]:
    times, sizes = {}, {}
    t = time.perf_counter()
    report = build_report(store, run_id)
    times["content"] = time.perf_counter() - t
    t = time.perf_counter()
    html = render_html(report)
    times["html"] = time.perf_counter() - t
    times["html report (content + html)"] = times["content"] + times["html"]
    t = time.perf_counter()
    pdf = render_pdf(report, "a4")
    times["pdf"] = time.perf_counter() - t
    t = time.perf_counter()
    bundle = bundle_bytes(store, report, html, pdf)
    times["bundle (data files, zip)"] = time.perf_counter() - t
    sizes.update(html=len(html), pdf=len(pdf), bundle=len(bundle))
    return times, sizes


def measure(label: str, store: Store, run_id: int, repeat: int) -> None:
    rows = store.sql("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])[0][0]
    cold, sizes = build(store, run_id)
    warm = [build(store, run_id)[0] for _ in range(repeat)]
    print(f"\n{label}: run {run_id}, {rows:,} metric rows")
    print(f"  {'':30s} {'cold':>8s} {'warm':>8s}   (warm: median of {repeat})")
    for key in cold:
        print(f"  {key:30s} {cold[key]:7.2f}s {statistics.median(w[key] for w in warm):7.2f}s")
    for key, size in sizes.items():
        print(f"  {key + ' size':30s} {size / 1e6:7.2f} MB")
    html_time = statistics.median(w["html report (content + html)"] for w in warm)
    print(f"  targets: HTML report built in {html_time:.2f} s (< 3 s: {'met' if html_time < 3 else 'MISSED'}), "
          f"{sizes['html'] / 1e6:.2f} MB (< 5 MB: {'met' if sizes['html'] < 5e6 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="evaluations per task of the synthetic run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from engine.config import load_config
    from engine.runs.manager import run_in_process

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        with Store(Path(tmp) / "demo.duckdb") as store:
            t = time.perf_counter()
            run_id = run_in_process(store, load_config(root / "configs" / "replay-demo.yaml"))
            print(f"trained the demo run in {time.perf_counter() - t:.1f} s")
            measure("demo (configs/replay-demo.yaml)", store, run_id, args.repeat)
        with Store(Path(tmp) / "long.duckdb") as store:
            t = time.perf_counter()
            run_id = fill(store, args.points)
            print(f"\nfilled the synthetic run in {time.perf_counter() - t:.1f} s")
            measure(f"synthetic, {args.points:,} evaluations per task", store, run_id, args.repeat)


if __name__ == "__main__":
    main()
