"""The lab's colours, for the pages' charts and the reports alike (both import them from here, so a
report looks as the page does: a chart without its own colours would get Streamlit's theme on the page
and Vega's default in a report). Groups and tasks that can be told apart: Tableau's 10 colours for
up to 10, 20 (Tableau's 10, then their light tints) for up to 20, and beyond 20 the colours repeat
(groups with a different dash pattern per round). No Streamlit here."""

from __future__ import annotations

TABLEAU10 = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
             "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
# the light tints of tableau20, after the ten strong colours (neighbours in a sorted legend stay apart)
TABLEAU20 = TABLEAU10 + ["#a0cbe8", "#ffbe7d", "#ff9d9a", "#8cd17d", "#f1ce63",
                         "#86bcb6", "#d4a6c8", "#fabfd2", "#d7b5a6", "#79706e"]
DASHES = [[1, 0], [6, 3], [2, 2], [10, 3, 2, 3], [1, 4]]


def group_styles(groups: list[str]) -> dict[str, list]:
    """``domain`` (the groups, in order), ``colors`` and ``dashes`` (one per group) for an Altair
    scale: ``alt.Scale(domain=s["domain"], range=s["colors"])``."""
    groups = list(dict.fromkeys(str(g) for g in groups))
    palette = TABLEAU10 if len(groups) <= 10 else TABLEAU20
    return {"domain": groups,
            "colors": [palette[i % len(palette)] for i in range(len(groups))],
            "dashes": [DASHES[(i // len(palette)) % len(DASHES)] for i in range(len(groups))]}


def task_colors(n_tasks: int) -> list[str]:
    """One colour a task, task 1 first: the run panels' lines in the lab and in every report."""
    palette = TABLEAU10 if n_tasks <= 10 else TABLEAU20
    return [palette[i % len(palette)] for i in range(n_tasks)]
