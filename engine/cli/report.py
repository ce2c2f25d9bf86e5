"""``python -m engine report RUN_ID... [--sweep NAME|ID] -o PATH.html [--pdf PATH.pdf] [--bundle PATH.zip]
[--paper a4|letter] [--group-by KEY] [--x METRIC --y METRIC] [--db PATH]``.

One run id: that run's report; several, or a sweep: a comparison (with --sweep, the ids given pick
runs of that sweep; none: all of them). Every argument is checked before the database is opened;
every file is written beside its target first and moved into place only once all are made, so a
failure leaves nothing half-written. Exit codes: 0 written, 2 bad input (one line), 3 the database
is held by another process that serves no snapshot."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.cli.setup import add_db_argument, open_store

MAX_ID = 2**31 - 1  # runs.id is an INTEGER
OUTPUTS = (("output", "-o", ".html"), ("pdf", "--pdf", ".pdf"), ("bundle", "--bundle", ".zip"))


def _problem(args) -> str | None:
    """The first problem with the arguments, as one line; None when they are fine."""
    from engine.core.inputs import cut_text

    targets = [(flag, getattr(args, key), suffix) for key, flag, suffix in OUTPUTS if getattr(args, key) is not None]
    if not targets:
        return "no output: give -o PATH.html, --pdf PATH.pdf or --bundle PATH.zip"
    if not args.run_ids and args.sweep is None:
        return "no runs: give RUN_ID... or --sweep NAME|ID"
    bad = [i for i in args.run_ids if not 1 <= i <= MAX_ID]
    if bad:
        return f"RUN_ID = {bad[0]}: run ids are whole numbers from 1 to {MAX_ID}"
    for flag, path, suffix in targets:  # different suffixes: never the same file twice
        shown = cut_text(str(path))
        if path.suffix.lower() not in (suffix, ".htm" if suffix == ".html" else suffix):
            return f"{flag} {shown}: must end in {suffix}"
        resolved = path.resolve()
        if resolved.is_dir():
            return f"{flag} {shown}: is a directory; give a file name"
        folder = resolved.parent
        if not folder.is_dir():
            return f"{flag} {shown}: the folder {cut_text(str(folder))} does not exist"
        if not os.access(folder, os.W_OK | os.X_OK) or (resolved.exists() and not os.access(resolved, os.W_OK)):
            return f"{flag} {shown}: cannot be written (permission denied)"
    return None


def _write_all(files: dict[Path, bytes]) -> str | None:
    """Write every file beside its target, then move them into place; on any failure remove what was
    written and return the problem (one line)."""
    temporary: list[Path] = []
    try:
        for path, data in files.items():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.append(tmp)
            tmp.write_bytes(data)
        for (path, _), tmp in zip(files.items(), temporary):
            os.replace(tmp, path)
    except OSError as err:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
        return f"{err.filename or 'output'}: cannot be written ({err.strerror or err})"
    return None


def cmd_report(args) -> int:
    from engine.report import ReportError, build_report
    from engine.report.bundle import bundle_bytes
    from engine.report.html import render_html
    from engine.report.pdf import render_pdf
    from store.pareto import resolve_sweep

    if problem := _problem(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not args.db.exists():
        print(f"error: --db {args.db}: no such database", file=sys.stderr)
        return 2
    store = open_store(args.db, read_only=True)  # a snapshot while the lab holds the file
    try:
        try:
            sweep_id = None if args.sweep is None else resolve_sweep(store, args.sweep)
            report = build_report(store, args.run_ids, sweep_id, args.group_by, args.x, args.y)
        except (LookupError, ReportError, ValueError) as err:
            print(f"error: {str(err).splitlines()[0]} in {args.db}; nothing was written", file=sys.stderr)
            return 2
        html = render_html(report)
        pdf = render_pdf(report, args.paper) if args.pdf or args.bundle else None
        files = {}
        if args.output:
            files[args.output] = html
        if args.pdf:
            files[args.pdf] = pdf
        if args.bundle:
            files[args.bundle] = bundle_bytes(store, report, html, pdf)
    finally:
        store.close()
    if problem := _write_all(files):
        print(f"error: {problem}; nothing was written", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{path} ({len(data) / 1e6:.2f} MB)" for path, data in files.items())
    print(f"{report.title}: {sizes}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("report", help="write a run's report (one id) or a comparison's (several, or --sweep) as "
                                      "offline HTML, PDF and a bundle zip",
                       description="One run id: the run's report; several ids, or --sweep: a comparison. "
                                   "The HTML needs no network; the bundle holds the HTML, the PDF and the data, "
                                   "and `python -m engine run BUNDLE.zip` reruns a run bundle's config.")
    p.add_argument("run_ids", type=int, nargs="*", metavar="RUN_ID")
    p.add_argument("--sweep", metavar="NAME|ID", help="a sweep: its runs (those of RUN_ID... only, if given)")
    p.add_argument("-o", "--output", type=Path, metavar="PATH.html", help="the HTML report")
    p.add_argument("--pdf", type=Path, metavar="PATH.pdf", help="the PDF report")
    p.add_argument("--bundle", type=Path, metavar="PATH.zip", help="a zip of both with the data")
    p.add_argument("--paper", choices=("a4", "letter"), default="a4", help="the PDF's page size (default a4)")
    p.add_argument("--group-by", metavar="KEY", help="a comparison's groups: strategy or a config key such as "
                                                     "train.lr (default: strategy when the runs have several)")
    p.add_argument("--x", metavar="METRIC", help="a comparison's Pareto x axis (default learning_accuracy)")
    p.add_argument("--y", metavar="METRIC", help="a comparison's Pareto y axis (default min_acc)")
    add_db_argument(p)
    p.set_defaults(func=cmd_report)
