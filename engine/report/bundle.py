"""A report's bundle: one zip with the HTML, the PDF, and the data to check or reproduce it.

A run's bundle::

    README.txt               what is here and how to rerun it
    report.html, report.pdf
    config.yaml              `python -m engine run config.yaml` (or `python -m engine run BUNDLE.zip`)
    metrics.parquet, metrics.csv                     every stored measurement, long form
    accuracy_matrix.parquet, accuracy_matrix.csv     row 0 before training, row i after task i
    summary.json             every summary metric (null with the reason where unavailable)
    environment.json         the versions the run trained with, and the report's

A comparison's bundle has report.html, report.pdf, environment.json, sweep.yaml (a sweep's spec, for
`python -m engine sweep`) and, per run, ``run-<id>/`` with that run's files as above.

``config_from_bundle`` reads a bundle back for `python -m engine run BUNDLE.zip`. The zip is hostile
input: its size, its entry count and its central directory are bounded before zipfile parses it;
only the top-level ``config.yaml`` is read (never extracted, so no path in it is ever used), at most
``max_input_bytes`` of it whatever its header claims, and it goes through the same guards and
validation as a config file.
"""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
import zlib
from pathlib import Path

from engine.core.inputs import ConfigError, cut_text, load_yaml
from engine.report.document import Report

MAX_BUNDLE_BYTES = 8 * 1024**3     # a bundle of a very long run (metrics as Parquet and CSV) stays below
MAX_ENTRIES = 100_000              # a comparison of 10,000 runs has about 80,000
MAX_DIRECTORY_BYTES = 64 * 1024**2  # the central directory zipfile reads into memory
CONFIG = "config.yaml"
ZIP_MAGIC = b"PK\x03\x04"
_EOCD = b"PK\x05\x06"


def run_data(store, run_id: int) -> dict[str, bytes]:
    """A run's data files (engine.export.run_files as Parquet), the tables also as CSV, written from the
    Parquet by Arrow (8 times pandas' speed: 11 M metric rows in seconds, not minutes)."""
    import pyarrow.csv
    import pyarrow.parquet

    from engine.export import run_files

    files = run_files(store, run_id, "parquet")
    for table in ("metrics", "accuracy_matrix"):
        out = io.BytesIO()
        pyarrow.csv.write_csv(pyarrow.parquet.read_table(io.BytesIO(files[f"{table}.parquet"])), out,
                              pyarrow.csv.WriteOptions(quoting_style="needed"))
        files[f"{table}.csv"] = out.getvalue()
    return files


README = """CL Lab report bundle: {title}

report.html   the report, self-contained (open it in any browser; it needs no network)
report.pdf    the same report for print
{listing}
{rerun}
"""


def bundle_bytes(store, report: Report, html: bytes, pdf: bytes) -> bytes:
    import yaml

    files: dict[str, bytes] = {"report.html": html, "report.pdf": pdf}
    if report.kind == "run":
        files.update(run_data(store, report.run_ids[0]))
        listing = ("config.yaml   the run's config\nmetrics.*     every measurement (step, task, metric, value)\n"
                   "accuracy_matrix.*  row 0 before training, row i after task i\nsummary.json  every summary metric\n")
        rerun = "Rerun: python -m engine run config.yaml   (or: python -m engine run THIS.zip)"
    else:
        for run_id in report.run_ids:
            files.update({f"run-{run_id}/{name}": data for name, data in run_data(store, run_id).items()})
        listing = "run-<id>/      each run's config.yaml, metrics, accuracy matrix and summary.json\n"
        rerun = "Rerun a run: python -m engine run run-<id>/config.yaml"
        if report.sweep_id is not None:
            (spec,) = store.sql("SELECT spec FROM sweeps WHERE id = ?", [report.sweep_id])[0]
            spec = json.loads(spec) if isinstance(spec, str) else spec
            files["sweep.yaml"] = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True).encode()
            listing += "sweep.yaml    the sweep as launched\n"
            rerun = "Rerun the sweep: python -m engine sweep sweep.yaml\n" + rerun
    files["environment.json"] = json.dumps(report.environment, indent=2, default=str).encode()
    listing += "environment.json  the versions the runs trained with, and the report's"
    files["README.txt"] = README.format(title=report.title, listing=listing, rerun=rerun).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files, key=lambda n: (n != "README.txt", "/" in n, n)):
            zf.writestr(name, files[name])
    return out.getvalue()


class BundleError(ConfigError):
    """A zip that is no readable CL Lab run bundle: one line naming the file and the problem."""


def is_bundle(path: str | Path) -> bool:
    """A zip by its first bytes (whatever its name ends with)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ZIP_MAGIC
    except OSError:
        return False


def _check_directory(f, size: int, source: str) -> None:
    """Bound the central directory from the end record before zipfile reads it all into memory."""
    tail_size = min(size, 22 + 65535)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise BundleError([f"{source}: not a zip file (no end of central directory)"])
    entries, directory_bytes = struct.unpack("<xxxxxxxxxxHI", tail[at:at + 16])
    if entries == 0xFFFF or directory_bytes == 0xFFFFFFFF:
        raise BundleError([f"{source}: a ZIP64 archive, larger than any CL Lab bundle"])
    if entries > MAX_ENTRIES or directory_bytes > MAX_DIRECTORY_BYTES:
        raise BundleError([f"{source}: {entries:,} entries in a {directory_bytes:,}-byte directory, more than a "
                           f"CL Lab bundle has (at most {MAX_ENTRIES:,} entries)"])


def config_from_bundle(path: str | Path):
    """The run config of a bundle, validated (``engine.config.parse_config``). ``BundleError`` (one line
    naming the bundle and the problem) for a zip that is no readable bundle; ``ConfigError`` (a line per
    problem) for a config.yaml that is no valid config."""
    from engine.config import parse_config
    from engine.core.limits import limits

    source = cut_text(str(path))
    most = limits().max_input_bytes
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size > MAX_BUNDLE_BYTES:
                raise BundleError([f"{source}: {size:,} bytes, larger than a bundle may be ({MAX_BUNDLE_BYTES:,})"])
            _check_directory(f, size, source)
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                found = [i for i in zf.infolist() if i.filename == CONFIG]
                if not found:
                    raise BundleError([f"{source}: no {CONFIG} at the top of the bundle (a comparison bundle has one "
                                       f"per run under run-<id>/: unzip it and run that file)"])
                if len(found) > 1:
                    raise BundleError([f"{source}: {len(found)} entries named {CONFIG}: which one is meant is unclear"])
                info = found[0]
                if info.flag_bits & 0x1:
                    raise BundleError([f"{source}: {CONFIG} is encrypted"])
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise BundleError([f"{source}: {CONFIG} is a symbolic link, not a file"])
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise BundleError([f"{source}: {CONFIG} is compressed with method {info.compress_type}; "
                                       "a bundle uses deflate"])
                if info.file_size > most:
                    raise BundleError([f"{source}: {CONFIG} is {info.file_size:,} bytes, more than the "
                                       f"{most:,} the lab reads (lab.toml [limits] max_input_bytes)"])
                with zf.open(info) as member:
                    data = member.read(most + 1)  # the header's size may lie: never more than this
                if len(data) > most:
                    raise BundleError([f"{source}: {CONFIG} unpacks to more than {most:,} bytes"])
    except BundleError:
        raise
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, RuntimeError) as err:
        raise BundleError([f"{source}: not a readable zip ({cut_text(str(err) or type(err).__name__)})"]) from None
    return parse_config(load_yaml(data, source=f"{source}:{CONFIG}"))
