"""``docs/metrics.md``: the metric definitions written out from ``METRICS``, the one place they are
defined (the Metrics page and reports render the same entries). ``python -m store.metric_docs >
docs/metrics.md`` rewrites it; a test keeps the file equal to this output."""

from __future__ import annotations

from store.metrics import METRICS

INTRO = """\
# Continual-learning metrics in CL Lab

Written from the metric registry, `store/metrics/` (`python -m store.metric_docs > docs/metrics.md`); the Metrics page shows the
same entries. Each metric is one pure function over a run's stored rows that returns a value and, when it
cannot be computed, the reason instead (never a 0 for "unavailable").

## Notation
- T tasks, trained in order 1..T; task i is trained over the global steps (start_i, end_i].
- R_{i,j}, the accuracy matrix: the accuracy on task j's test set after training task i, from the full
  evaluation at each task's end; row 0 is the model before any training (b_j = R_{0,j}).
- A(j, n), the continual-evaluation series (De Lange et al. 2023): the accuracy on task j at global step
  n, measured every `eval.every` steps and at each task's last step, on a fixed subset of `eval.subset`
  test samples per task when that is set (else on the whole test set, and then the task-end evaluations
  join the series).
- k: the task being trained at the step t a series metric is taken at (the last evaluated one).

## Conventions where libraries differ
- A run still training, or stopped early, is summarised over what it has done: matrix metrics take
  T := k, the last task that ended; series metrics are taken at the last evaluation.
- Forgetting: Chaudhry et al. (the default, `forgetting`) take the best accuracy over the rows before the
  last; Avalanche (`forgetting_avalanche`) the accuracy right after the task was trained (this equals
  -BWT); Mammoth and PyCIL take the maximum over every row, the last included.
- Average accuracy weights tasks equally (GEM); Avalanche's stream accuracy weights them by test samples.
- FWT is measured against the model before training (row 0), as GEM defines it; without a step-0
  evaluation it is unavailable, never taken against 0.
- The stability gap's depth at a switch is the accuracy at the switch minus the lowest after it, while the
  next task trains; recovery is the number of steps until it is back within a tolerance of that level.
- Class-incremental EWC and SI near 1/T accuracy (about 0.2 on 5-task Split-MNIST) is the published
  result, not a defect.
"""

GROUPS = {"matrix": "At task boundaries (the accuracy matrix)",
          "continual": "Continual evaluation (the series)",
          "l2m": "Lifelong-learning metrics (L2M)"}


def markdown() -> str:
    parts = [INTRO]
    for group, heading in GROUPS.items():
        parts.append(f"\n## {heading}\n")
        for m in METRICS.values():
            if m.group != group:
                continue
            better = {True: "higher is better", False: "lower is better", None: ""}[m.higher_is_better]
            lines = [f"\n### {m.title} (`{m.key}`)\n", f"$$\n{m.latex}\n$$\n",
                     f"- What it tells: {m.tells}" + (f" ({better})" if better else ""),
                     f"- Source: {m.source}"]
            if m.needs:
                lines.append(f"- Needs: {m.needs}")
            parts.append("\n".join(lines) + "\n")
    return "".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")
