"""Pareto dominance between runs, and the frontier of a set of runs on two summary metrics.

Dominance (the one definition everything here uses). After turning each axis so that larger is
better (a lower-is-better metric is negated), point q dominates point p when q >= p on both axes and
q > p on at least one. Consequences, pinned by tests/test_pareto.py:

- equal points do not dominate each other: duplicates on the front are all kept;
- a point with the same x as another and a lower y is dominated (>= on x, > on y), and likewise
  for the same y and a worse x: ties on one axis are broken by the other;
- a point with a missing value (None or NaN) or an infinite one is neither on the front nor
  dominated: it is excluded, with a reason, and dominates nothing.

The axes are summary metrics: the keys of ``store.metrics.METRICS`` (direction from
``higher_is_better``) and the derived ones of ``DERIVED``:

- ``stability_from_forgetting`` = 1 - ``forgetting`` (Chaudhry's average forgetting), higher is
  better: stability on an accuracy scale, for a y axis where up is good.

``frontier_table`` takes the values from ``store.metrics.summaries``; a run whose metric is None
(unavailable: the reason comes from the summary) is left out and listed in ``table.attrs["excluded"]``.
Defaults: x = ``learning_accuracy`` (plasticity), y = ``min_acc`` (worst-case stability).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from store.metrics import METRICS

DEFAULT_X = "learning_accuracy"
DEFAULT_Y = "min_acc"
CONFIG_IGNORED = ("name", "seed")  # a "config" (by="config") is the run config without these keys


@dataclass(frozen=True)
class Axis:
    key: str
    title: str
    higher_is_better: bool | None
    definition: str                                      # one line, for the app and the CLI
    derive: Callable[[Mapping[str, Any]], tuple[float | None, str | None]] | None = None  # from a summary
    sources: tuple[str, ...] = ()                        # the summary keys ``derive`` reads


def _one_minus(source: str):
    def derive(summary: Mapping[str, Any]) -> tuple[float | None, str | None]:
        v = summary.get(source)
        if v is None:
            return None, f"{source} unavailable: {summary.get('unavailable', {}).get(source, 'not computable')}"
        return 1.0 - float(v), None
    return derive


DERIVED: dict[str, Axis] = {
    "stability_from_forgetting": Axis(
        "stability_from_forgetting", "Stability (1 - forgetting)", True,
        "1 - forgetting: one minus Chaudhry's average forgetting (Riemannian Walk, ECCV 2018)",
        _one_minus("forgetting"), sources=("forgetting",)),
}

AXES: dict[str, Axis] = {
    **{k: Axis(k, m.title, m.higher_is_better, m.tells) for k, m in METRICS.items()},
    **DERIVED,
}


class UnknownMetric(ValueError):
    """An axis that is neither a key of METRICS nor a derived metric."""


def axis(key: str) -> Axis:
    """The axis of a metric key; ``UnknownMetric`` (one line, listing the allowed keys) otherwise."""
    try:
        return AXES[key]
    except KeyError:
        raise UnknownMetric(f"unknown metric {key!r}; allowed: {', '.join(AXES)}") from None


def axis_title(key: str) -> str:
    a = axis(key)
    better = {True: "higher is better", False: "lower is better"}.get(a.higher_is_better, "no direction")
    return f"{a.title} ({better})"


# ---- dominance -------------------------------------------------------------------------------------

def pareto_analysis(points, maximize: Sequence[bool] = (True, True)) -> tuple[np.ndarray, list[str | None]]:
    """For n points (an (n, 2) array-like; None and NaN allowed): a bool mask of the non-dominated
    points, and for each point why it is not on the front (None for points on it):
    ``"dominated by point j"`` (j one dominating point) or ``"excluded: x is missing"`` etc.

    Dominance as in the module docstring; O(n log n): sort by x (best first), then sweep."""
    P = np.asarray(points if len(points) else np.empty((0, 2)), dtype=float).reshape(-1, 2)
    n = len(P)
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    Q = P * signs
    reasons: list[str | None] = [None] * n
    mask = np.zeros(n, dtype=bool)
    for i in range(n):
        for a, name in enumerate("xy"):
            v = P[i, a]
            if math.isnan(v):
                reasons[i] = f"excluded: {name} is missing (None or NaN)"
                break
            if math.isinf(v):
                reasons[i] = f"excluded: {name} is not finite ({v})"
                break
    valid = np.flatnonzero(np.isfinite(P).all(axis=1))
    order = valid[np.lexsort((-Q[valid, 1], -Q[valid, 0]))]  # x best first, within equal x y best first
    qx, qy = Q[order, 0].tolist(), Q[order, 1].tolist()
    best_y, best_i = -math.inf, -1   # the best y among points of strictly better x, and its index
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and qx[j] == qx[i]:
            j += 1
        top_y, top_i = qy[i], int(order[i])           # this x's best y
        for m in range(i, j):
            p = int(order[m])
            if qy[m] < top_y:                          # same x, lower y
                reasons[p] = f"dominated by point {top_i}"
            elif top_y > best_y:                       # the best y of its x, above every better x
                mask[p] = True
            else:                                      # a better x with a y at least as good
                reasons[p] = f"dominated by point {best_i}"
        if top_y > best_y:
            best_y, best_i = top_y, top_i
        i = j
    return mask, reasons


def pareto_front(points, maximize: Sequence[bool] = (True, True)) -> np.ndarray:
    """Bool mask of the non-dominated points (see the module docstring for ties and missing values)."""
    return pareto_analysis(points, maximize)[0]


# ---- runs and configs ------------------------------------------------------------------------------

def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def config_key(config: Mapping[str, Any]) -> str:
    """A run's config without ``name`` and ``seed``, as canonical JSON: runs with the same key are
    seeds of one config."""
    return json.dumps({k: v for k, v in config.items() if k not in CONFIG_IGNORED}, sort_keys=True)


_ABSENT = object()


def _hashable(v: Any):
    if isinstance(v, (list, dict)):
        return "json", json.dumps(v, sort_keys=True)
    return type(v).__name__, v


def hyperparameters(configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each config, what tells it apart: its strategy's hyperparameters (bare keys, always), and
    every other config value that differs between these configs (dotted keys, e.g. ``train.lr``),
    ``name`` and ``seed`` left out."""
    flats = [_flat({k: v for k, v in c.items() if k not in ("strategy", *CONFIG_IGNORED)}) for c in configs]
    keys = sorted({k for f in flats for k in f})
    varying = [k for k in keys if len({_hashable(f.get(k, _ABSENT)) for f in flats}) > 1]
    out = []
    for c, f in zip(configs, flats):
        strat = c.get("strategy") if isinstance(c.get("strategy"), Mapping) else {}
        hp = {k: v for k, v in strat.items() if k != "name"}
        hp.update({k: f.get(k) for k in varying})
        out.append(hp)
    return out


def hyperparameter_text(hp: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in hp.items()) or "-"


# Summaries of runs that can no longer change, per Store (a page reruns on every click): keyed by
# run id, valid while the run's (status, last_step, finished_at) and the store's reference
# candidates (Joint runs, single-task experts, which some metrics read) are unchanged.
def _values(store, run_ids: Sequence[int], keys: Sequence[str]) -> dict[int, dict]:
    """{run id: {metric: value, ..., "unavailable": {...}}} from ``summaries``, computing only the
    metrics the axes need (a derived axis needs its source)."""
    wanted: set[str] = set()
    for key in keys:
        a = axis(key)
        wanted |= set(a.sources) if a.derive is not None else {key}
    from store.compare import cached_summaries  # ended runs' summaries are kept between page refreshes

    return cached_summaries(store, list(run_ids), wanted)


def _metric(values: Mapping[str, Any], key: str) -> tuple[float | None, str | None]:
    a = axis(key)
    if a.derive is not None:
        return a.derive(values)
    v = values.get(key)
    if v is None:
        return None, f"{key} unavailable: {values.get('unavailable', {}).get(key, 'not computable')}"
    return float(v), None


def frontier_table(store, x: str = DEFAULT_X, y: str = DEFAULT_Y, run_ids: Iterable[int] | None = None,
                   sweep_id: int | None = None, by: str = "run",
                   statuses: Sequence[str] | None = ("finished",)) -> pd.DataFrame:
    """The runs (``by="run"``) or configs (``by="config"``) of a selection on two metrics, with the
    non-dominated ones marked.

    Selection: ``run_ids`` and/or ``sweep_id`` (both None: every run), and ``statuses`` (default:
    finished runs only; None: any status). ``x`` and ``y`` are keys of ``AXES``; their direction
    comes from ``higher_is_better``.

    by="run", one row a run: ``id``, ``name``, ``strategy``, ``seed``, ``hparams`` (readable text),
    ``hparams_dict``, ``<x>``, ``<y>``, ``on_front``, ``dominated_by`` (the id of a run that
    dominates it, else None).

    by="config", one row a config (a config without ``name`` and ``seed``: its runs are seeds of it):
    ``id`` (its lowest run id, for opening a run), ``ids``, ``n`` (runs with both metrics),
    ``strategy``, ``hparams``, ``hparams_dict``, ``config_key``, ``<x>``/``<y>`` (means over its
    runs), ``<x>_std``/``<y>_std`` (sample standard deviation, NaN for one run), ``on_front`` (on
    the means), ``dominated_by``.

    A run with either metric unavailable is left out (before averaging) and listed in
    ``attrs["excluded"]`` as {"id", "reason"}; ``attrs`` also holds x, y, by, maximize and
    n_selected."""
    ax, ay = axis(x), axis(y)
    if ax.higher_is_better is None or ay.higher_is_better is None:
        raise ValueError(f"{x if ax.higher_is_better is None else y} has no better direction: not a Pareto axis")
    if x == y:
        raise ValueError("x and y must be different metrics")
    if by not in ("run", "config"):
        raise ValueError(f"by must be 'run' or 'config', got {by!r}")
    maximize = (ax.higher_is_better, ay.higher_is_better)
    ids = None if run_ids is None else [int(i) for i in run_ids]
    with store.cursor() as cur:
        # the config without name and seed ("core"): runs that differ only there share one parse
        rows = cur.execute(
            """SELECT id, name, status, last_step, finished_at,
                      CAST(json_merge_patch(config, '{"name": null, "seed": null}') AS VARCHAR) AS core,
                      CAST(config->'seed' AS VARCHAR) AS seed
               FROM runs
               WHERE ($ids IS NULL OR list_contains($ids, id)) AND ($sweep IS NULL OR sweep_id = $sweep)
                 AND ($statuses IS NULL OR list_contains($statuses, status))
               ORDER BY id""",
            {"ids": ids, "sweep": sweep_id, "statuses": list(statuses) if statuses else None}).fetchall()
    cores = list(dict.fromkeys(r[5] for r in rows))
    parsed = [json.loads(c) if c else {} for c in cores]
    parsed = [c if isinstance(c, dict) else {} for c in parsed]
    info = {core: (cfg, hp, hyperparameter_text(hp), config_key(cfg))
            for core, cfg, hp in zip(cores, parsed, hyperparameters(parsed))}
    values = _values(store, [r[0] for r in rows], (x, y)) if rows else {}
    excluded, kept = [], []
    for r in rows:
        vx, why_x = _metric(values[r[0]], x)
        vy, why_y = _metric(values[r[0]], y)
        if vx is None or vy is None:
            excluded.append({"id": r[0], "reason": "; ".join(w for w in (why_x, why_y) if w)})
            continue
        cfg, hp, text, key = info[r[5]]
        strat = cfg.get("strategy") if isinstance(cfg.get("strategy"), dict) else {}
        kept.append({"id": r[0], "name": r[1], "strategy": strat.get("name"),
                     "seed": json.loads(r[6]) if r[6] is not None else None,
                     "hparams": text, "hparams_dict": dict(hp), "config_key": key, x: vx, y: vy})
    if by == "run":
        columns = ["id", "name", "strategy", "seed", "hparams", "hparams_dict", x, y]
        df = pd.DataFrame(kept, columns=columns + ["config_key"])[columns]
    else:
        df = _by_config(kept, x, y)
    mask, reasons = pareto_analysis(df[[x, y]].to_numpy(dtype=float), maximize)
    ids_col = df["id"].tolist()
    df["on_front"] = mask
    df["dominated_by"] = pd.Series([None if r is None or not r.startswith("dominated") else ids_col[int(r.rsplit(" ", 1)[1])]
                                    for r in reasons], index=df.index, dtype=object)
    df.attrs.update({"x": x, "y": y, "by": by, "maximize": maximize, "n_selected": len(rows),
                     "excluded": excluded})
    return df


def _by_config(kept: list[dict], x: str, y: str) -> pd.DataFrame:
    columns = ["id", "ids", "n", "strategy", "hparams", "hparams_dict", "config_key", x, f"{x}_std", y, f"{y}_std"]
    groups: dict[str, list[dict]] = {}
    for row in kept:
        groups.setdefault(row["config_key"], []).append(row)
    out = []
    for key, rows in groups.items():
        xs = np.array([r[x] for r in rows])
        ys = np.array([r[y] for r in rows])
        n = len(rows)
        out.append({"id": min(r["id"] for r in rows), "ids": sorted(r["id"] for r in rows), "n": n,
                    "strategy": rows[0]["strategy"], "hparams": rows[0]["hparams"],
                    "hparams_dict": rows[0]["hparams_dict"], "config_key": key,
                    x: float(xs.mean()), f"{x}_std": float(xs.std(ddof=1)) if n > 1 else math.nan,
                    y: float(ys.mean()), f"{y}_std": float(ys.std(ddof=1)) if n > 1 else math.nan})
    return pd.DataFrame(sorted(out, key=lambda r: r["id"]), columns=columns)


def resolve_sweep(store, name_or_id: str | int) -> int:
    """A sweep's id from its id or its name; ``LookupError`` (one line) if none or several match."""
    text = str(name_or_id).strip()
    if text.isdigit() and store.sql("SELECT 1 FROM sweeps WHERE id = ?", [int(text)]):
        return int(text)
    found = [r[0] for r in store.sql("SELECT id FROM sweeps WHERE name = ? ORDER BY id", [text])]
    if len(found) == 1:
        return found[0]
    if found:
        raise LookupError(f"several sweeps are named {text!r} (ids {', '.join(map(str, found))}): give the id")
    names = [r[0] for r in store.sql("SELECT DISTINCT name FROM sweeps ORDER BY name LIMIT 20")]
    raise LookupError(f"no sweep named {text!r}" + (f"; sweeps: {', '.join(names)}" if names else "; there are no sweeps"))


def front_records(table: pd.DataFrame) -> list[dict]:
    """The non-dominated rows of a ``frontier_table`` as JSON-able dicts (CLI, reports)."""
    x, y = table.attrs["x"], table.attrs["y"]
    keep = [c for c in ("id", "ids", "n", "name", "strategy", "seed", "hparams", "hparams_dict",
                        x, f"{x}_std", y, f"{y}_std") if c in table.columns]
    out = []
    for rec in table.loc[table["on_front"], keep].sort_values(x, ascending=not table.attrs["maximize"][0]).to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else
                        v.item() if hasattr(v, "item") else v) for k, v in rec.items()})
    return out


__all__ = ["AXES", "Axis", "CONFIG_IGNORED", "DEFAULT_X", "DEFAULT_Y", "DERIVED", "UnknownMetric", "axis",
           "axis_title", "config_key", "front_records", "frontier_table", "hyperparameter_text", "hyperparameters",
           "pareto_analysis", "pareto_front", "resolve_sweep"]
