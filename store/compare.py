"""Comparing runs: curves grouped by strategy or by any hyperparameter (mean and a band over the
runs of a group, typically seeds), and the summary metrics as mean and standard deviation."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from store.queries import _cur, full_series, keep_extremes

# the curves a comparison overlays, panel by panel (store.queries.full_series columns)
COMPARE_SERIES = {
    "seen_acc": "Accuracy on the tasks seen so far",
    "stability": "Stability: mean accuracy on earlier tasks",
    "plasticity": "Plasticity: accuracy on the task being trained",
    "train_loss": "Training loss",
}
TABLE_METRICS = ("acc", "bwt", "forgetting", "learning_accuracy", "min_acc", "wc_acc", "wf10", "stability_gap")


def config_value(config: dict, key: str) -> Any:
    """A value of a run config by dotted key (``train.lr``); ``strategy`` means the strategy's name."""
    if key == "strategy":
        key = "strategy.name"
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def group_label(config: dict, group_by: str) -> str:
    value = config_value(config, group_by)
    if group_by in ("strategy", "strategy.name"):
        return str(value)
    return f"{group_by.split('.')[-1]}={json.dumps(value) if not isinstance(value, str) else value}"


def hyperparameter_keys(configs: list[dict]) -> list[str]:
    """The dotted keys whose value differs between these configs (what one can group by)."""
    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = json.dumps(v)
        return out
    flats = [flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if k != "name" and len({f.get(k) for f in flats}) > 1]


def select_runs(source, statuses=None, strategies=None, sweep_id: int | None = None,
                run_ids: list[int] | None = None) -> pd.DataFrame:
    """Runs by filter, by sweep, or by hand: id, name, strategy, status, sweep_id, seed, config (a dict)."""
    df = _cur(source).execute(
        """
        SELECT id, name, config->'strategy'->>'name' AS strategy, status, sweep_id, sweep_phase,
               CAST(config->>'seed' AS INTEGER) AS seed, config
        FROM runs
        WHERE ($statuses IS NULL OR list_contains($statuses, status))
          AND ($strategies IS NULL OR list_contains($strategies, config->'strategy'->>'name'))
          AND ($sweep IS NULL OR sweep_id = $sweep)
          AND ($ids IS NULL OR list_contains($ids, id))
        ORDER BY id
        """,
        {"statuses": statuses or None, "strategies": strategies or None, "sweep": sweep_id,
         "ids": [int(i) for i in run_ids] if run_ids else None},
    ).df()
    df["config"] = [json.loads(c) for c in df["config"]]
    return df


def group_curves(source, runs: pd.DataFrame, group_by: str = "strategy", points: int = 1500) -> pd.DataFrame:
    """One row per (group, evaluation step): for each series of ``COMPARE_SERIES`` its mean over the
    group's runs, and a band of one standard deviation (``<s>_lo``, ``<s>_hi``), with ``n`` the runs
    measured at that step. Runs of one config share their evaluation steps, so seeds align exactly.
    Each group is downsampled keeping each bucket's extremes of the means."""
    cur = _cur(source)
    frames = []
    for run_id, config in zip(runs["id"], runs["config"]):
        df = full_series(cur, int(run_id))
        if df.empty:
            continue
        frames.append(df[["step", *COMPARE_SERIES]].assign(group=group_label(config, group_by)))
    columns = ["group", "step", "n"] + [f"{s}_{p}" for s in COMPARE_SERIES for p in ("mean", "lo", "hi")]
    if not frames:
        return pd.DataFrame(columns=columns)
    long = pd.concat(frames, ignore_index=True)
    grouped = long.groupby(["group", "step"], sort=True)
    mean, std = grouped[list(COMPARE_SERIES)].mean(), grouped[list(COMPARE_SERIES)].std().fillna(0.0)
    out = pd.DataFrame(index=mean.index)
    out["n"] = grouped.size()
    for s in COMPARE_SERIES:
        out[f"{s}_mean"] = mean[s]
        out[f"{s}_lo"] = mean[s] - std[s]
        out[f"{s}_hi"] = mean[s] + std[s]
    out = out.reset_index()
    per_group = max(100, points // max(1, out["group"].nunique()))
    kept = [g.iloc[keep_extremes(g.reset_index(drop=True), [f"{s}_mean" for s in COMPARE_SERIES], per_group)]
            for _, g in out.groupby("group", sort=True)]
    return pd.concat(kept, ignore_index=True)[columns]


def group_metrics(source, runs: pd.DataFrame, group_by: str = "strategy", keys=TABLE_METRICS) -> pd.DataFrame:
    """The summary metrics of each group: ``<key>`` (mean over its runs) and ``<key> sd`` (sample
    standard deviation; NaN with one run), ``runs`` counted, a metric unavailable for a run left out."""
    from store.metrics import summaries

    if runs.empty:
        return pd.DataFrame(columns=["group", "runs"])
    results = summaries(source, [int(i) for i in runs["id"]])
    by_id = {r["run_id"]: r for r in results}
    rows = [{"group": group_label(config, group_by), **{k: by_id[int(i)].get(k) for k in keys}}
            for i, config in zip(runs["id"], runs["config"])]
    df = pd.DataFrame(rows).astype({k: float for k in keys})
    grouped = df.groupby("group", sort=True)
    out = grouped.size().rename("runs").to_frame()
    for k in keys:
        out[k] = grouped[k].mean()
        out[f"{k} sd"] = grouped[k].std()
    return out.reset_index()
