"""The metric registry. Adding a metric means adding its function and ``Metric`` entry to its family's
file (``matrix``, ``continual``, ``gap``, ``l2m``) or a new file, and one line here: the summary
(``store.metrics.summary``), the CLI, the Run and Compare pages, the Metrics page, ``docs/metrics.md``
(``store/metric_docs.py``) and the reports all read this registry."""

from __future__ import annotations

from store.metrics import continual, gap, l2m, matrix
from store.metrics.metric import Metric
from store.registry import Registry

# one line a metric, in the order the pages, the docs and the CLI list them
METRICS: Registry[Metric] = Registry("metric", (
    matrix.ACC,
    matrix.TASK_IL_ACC,
    matrix.BWT,
    matrix.FWT,
    matrix.FORGETTING,
    matrix.FORGETTING_AVALANCHE,
    matrix.LEARNING_ACCURACY,
    matrix.INTRANSIGENCE,
    matrix.AVG_INCREMENTAL_ACC,
    continual.MIN_ACC,
    continual.WC_ACC,
    *continual.WF.values(),  # one entry per window of WINDOWS
    *continual.WP.values(),
    gap.STABILITY_GAP,
    gap.RECOVERY_STEPS,
    l2m.TERMINAL_PERFORMANCE,
    l2m.PERFORMANCE_MAINTENANCE,
    l2m.FORWARD_TRANSFER_RATIO,
    l2m.BACKWARD_TRANSFER_RATIO,
    l2m.FORWARD_TRANSFER_CONTRAST,
    l2m.BACKWARD_TRANSFER_CONTRAST,
    l2m.RELATIVE_PERFORMANCE,
    l2m.SAMPLE_EFFICIENCY,
), name_of=lambda m: m.key)

__all__ = ["METRICS"]
