"""A sweep's runs grouped by config, each with a metric's mean over its seeds; and a grid or random
sweep's outcome, its configs ranked by that mean."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from engine.sweeps.outcome import Outcome
from engine.sweeps.spec import fmt_value
from store.sweeps import sweep_runs


def flat_config(config: Mapping) -> dict[str, Any]:
    """A run config as dotted keys (``train.lr``); top-level values as they are."""
    out = {}
    for section, value in config.items():
        if isinstance(value, dict):
            for k, v in value.items():
                out[f"{section}.{k}"] = v
        else:
            out[section] = value
    return out


def config_results(store, sweep_id: int, metric: str = "acc", phase: str | None = None) -> list[dict]:
    """The sweep's runs grouped by config (everything but the name and the seed), each with the metric
    over its finished runs: strategy, hparams (the strategy's hyperparameters and the keys that vary
    in the sweep), config, run_ids, seeds, values, n, mean, std (sample std; None below 2 values).
    Runs that did not finish, or whose metric is unavailable, count in ``run_ids`` but not in ``n``."""
    from store.metrics.summary import summaries

    rows = sweep_runs(store, sweep_id, phase)
    finished = [r[0] for r in rows if r[1] == "finished"]
    values = {rid: s.get(metric) for rid, s in zip(finished, summaries(store, finished))} if finished else {}
    groups: dict[str, dict] = {}
    for run_id, status, config, seed in rows:
        cfg = json.loads(config) if isinstance(config, str) else config
        rest = {k: v for k, v in cfg.items() if k not in ("name", "seed")}
        key = json.dumps(rest, sort_keys=True)
        g = groups.setdefault(key, {"strategy": cfg["strategy"]["name"], "config": rest, "run_ids": [],
                                    "seeds": [], "values": []})
        g["run_ids"].append(run_id)
        g["seeds"].append(seed)
        v = values.get(run_id)
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
            g["values"].append(float(v))
    flats = [flat_config(g["config"]) for g in groups.values()]
    varying = {k for k in set().union(*flats) if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1} \
        if flats else set()
    out = []
    for g, flat in zip(groups.values(), flats):
        vals = g["values"]
        g["hparams"] = {k: v for k, v in flat.items()
                        if k != "strategy.name" and (k.startswith("strategy.") or k in varying)}
        g["n"] = len(vals)
        g["mean"] = float(np.mean(vals)) if vals else None
        g["std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        out.append(g)
    return out


def results_outcome(store, sweep_id: int, metric: str = "acc", top: int = 10) -> Outcome | None:
    """The configs ranked by the mean of ``metric`` over their seeds, the best ``top``; None while no
    run has finished with it."""
    from store.metrics import METRICS

    groups = config_results(store, sweep_id, metric)
    if not any(g["n"] for g in groups):
        return None
    higher = METRICS[metric].higher_is_better
    ranked = sorted(groups, key=lambda g: (g["mean"] is None, -(g["mean"] or 0) if higher else (g["mean"] or 0)))
    rows = [[g["mean"], g["std"], g["n"], " ".join([g["strategy"]] + [f"{k.split('.', 1)[-1]}={fmt_value(v)}"
                                                                      for k, v in g["hparams"].items()])]
            for g in ranked[:top]]
    return Outcome("Configs", f"ranked by the mean {metric} over their seeds", [f"mean {metric}", "std", "n", "config"],
                   rows, key="config_results",
                   note=f"... and {len(ranked) - top} more config(s)" if len(ranked) > top else "")
