"""Group colours that can be told apart, the same in every chart of a page: Tableau's 10 colours for
up to 10 groups, 20 (Tableau's 10, then their light tints) for up to 20, and beyond 20 the colours
repeat with a different dash pattern per round. No Streamlit here."""

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
