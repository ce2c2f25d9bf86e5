"""The Runs page's table beyond ``queries.runs_table``: a column for any hyperparameter (a dotted config
key, ``train.lr``) or summary metric (``acc``, ``bwt``, ...), numeric range filters, and sorting.

The page refreshes every 2 s over what may be thousands of runs, so what cannot have changed is
computed once per lab store: a run's summary metrics are kept while its (status, last step) is the
same (a finished run's never change; a running run's are recomputed as it moves on), its parsed
config for good (a run's config is never rewritten), and the hyperparameter keys while the set of
runs is the same.
"""

from __future__ import annotations

import json
import math
import weakref
from dataclasses import dataclass, field

import pandas as pd

from store.compare import config_value, hyperparameter_keys
from store.metrics import METRICS
from store.metrics.summary import summaries
from store.queries import MAX_SEARCH_CHARS, runs_table

# Metrics that compare a run with other runs (a Joint reference, single-task experts) change when
# those runs are added or deleted, so a cached value would go stale: the Run page shows them.
NEEDS_OTHER_RUNS = ("intransigence", "relative_performance", "sample_efficiency")
RUN_METRICS = tuple(k for k in METRICS if k not in NEEDS_OTHER_RUNS)
BASE_SORT = ("id", "name", "status", "progress", "created", "strategy", "dataset")


@dataclass
class _Cache:
    configs: dict[int, dict] = field(default_factory=dict)
    metrics: dict[int, tuple[tuple, dict]] = field(default_factory=dict)  # id: ((status, last_step), values)
    keys: tuple[tuple, list, set] = ((), [], set())  # (run ids, hyperparameter keys, numeric ones)


_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Store -> _Cache


def _cache(store) -> _Cache:
    if store not in _caches:
        _caches[store] = _Cache()
    return _caches[store]


def _configs(store, ids, texts) -> list[dict]:
    cache = _cache(store).configs
    for run_id, text in zip(ids, texts):
        if run_id not in cache:
            cache[run_id] = json.loads(text)
    return [cache[i] for i in ids]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def column_options(store) -> tuple[list[str], set[str]]:
    """The hyperparameter keys of the lab's runs (those whose value differs between them: a key the
    same for every run says nothing in a table) and which of them are numbers in every run that has
    them (they can be range-filtered)."""
    cache = _cache(store)
    rows = store.sql("SELECT id, CAST(config AS VARCHAR) FROM runs ORDER BY id")
    ids = tuple(r[0] for r in rows)
    if cache.keys[0] != ids:
        configs = _configs(store, ids, [r[1] for r in rows])
        keys = hyperparameter_keys(configs)
        numeric = {k for k in keys if all(_is_number(v) for c in configs if (v := config_value(c, k)) is not None)}
        cache.keys = (ids, keys, numeric)
    return cache.keys[1], cache.keys[2]


def run_metrics(store, runs: pd.DataFrame) -> pd.DataFrame:
    """``RUN_METRICS`` of the runs of a ``runs_table`` (same index), from the cache where the run's
    status and last step are those it was computed at."""
    cache = _cache(store).metrics
    stamps = {int(i): (s, int(n)) for i, s, n in zip(runs["id"], runs["status"], runs["last_step"])}
    stale = [i for i, stamp in stamps.items() if i not in cache or cache[i][0] != stamp]
    if stale:
        try:
            results = summaries(store, stale)
        except KeyError:  # a run deleted since the table was read: leave it out
            present = {r[0] for r in store.sql("SELECT id FROM runs WHERE list_contains(?, id)", [stale])}
            results = summaries(store, [i for i in stale if i in present])
        for result in results:
            cache[result["run_id"]] = (stamps[result["run_id"]], {k: result.get(k) for k in RUN_METRICS})
    empty = dict.fromkeys(RUN_METRICS)
    rows = [cache[i][1] if i in cache else empty for i in stamps]
    return pd.DataFrame(rows, index=runs.index, columns=list(RUN_METRICS), dtype=float)


def config_columns(store, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """A column for each dotted config key (same index as ``runs``): numbers as floats where every
    value is a number, else text (lists and mappings as JSON); missing values None."""
    configs = _configs(store, [int(i) for i in runs["id"]], runs["config"])
    out = {}
    for key in keys:
        values = [config_value(c, key) for c in configs]
        if all(v is None or _is_number(v) for v in values):
            out[key] = pd.Series([math.nan if v is None else float(v) for v in values], index=runs.index, dtype=float)
        else:
            out[key] = pd.Series([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                                 index=runs.index, dtype=object)
    return pd.DataFrame(out, index=runs.index)


def apply_ranges(df: pd.DataFrame, ranges: dict[str, tuple[float | None, float | None]]) -> pd.DataFrame:
    """The rows whose value of each column lies in its range (a bound None is open); a row without a
    value there is left out once either bound is set."""
    keep = pd.Series(True, index=df.index)
    for column, (low, high) in ranges.items():
        values = pd.to_numeric(df[column], errors="coerce")
        if low is not None:
            keep &= values >= low
        if high is not None:
            keep &= values <= high
    return df[keep]


def sort_runs(df: pd.DataFrame, by: str, descending: bool) -> pd.DataFrame:
    """Sorted by one column, runs without a value last, ties newest first."""
    newest_first = df.sort_values("id", ascending=False)
    if by == "id":
        return newest_first if descending else newest_first.iloc[::-1]
    return newest_first.sort_values(by, ascending=not descending, na_position="last", kind="stable")


def runs_view(store, *, statuses=None, strategies=None, search: str | None = None, columns=(),
              ranges: dict | None = None, sort_by: str = "id", descending: bool = True,
              max_search_chars: int = MAX_SEARCH_CHARS) -> pd.DataFrame:
    """The runs table with the extra ``columns`` (metrics of ``RUN_METRICS``, hyperparameter keys),
    filtered by ``ranges`` {column: (low, high)} and sorted. Columns needed only to filter or sort are
    added too. ``search`` as ``runs_table``'s (ValueError past ``max_search_chars``)."""
    df = runs_table(store, statuses, strategies, search, max_search_chars)
    wanted = list(dict.fromkeys([*columns, *(ranges or {}), sort_by]))
    metric_columns = [c for c in wanted if c in RUN_METRICS]
    config_keys = [c for c in wanted if c not in RUN_METRICS and c not in df.columns]
    if metric_columns and len(df):
        df = df.join(run_metrics(store, df)[metric_columns])
    else:
        df = df.assign(**{c: pd.Series(dtype=float) for c in metric_columns})
    if config_keys:
        df = df.join(config_columns(store, df, config_keys)) if len(df) else df.assign(
            **{c: pd.Series(dtype=object) for c in config_keys})
    if ranges:
        df = apply_ranges(df, ranges)
    return sort_runs(df, sort_by, descending).reset_index(drop=True)
