"""A table's selected row that follows its run (by id), never a row position.

Streamlit reports a table's selection as row positions in the rows the browser showed. A browser's
selection can reach the server after the rows have moved: a live page's refresh timer sends the
browser's widget state every period, whatever script run is still on its way to it. Read against the
new rows, that old position names another run (a Delete would then delete it). So the table's widget
key names its rows: a position is read only against the very rows it was made on, a selection sent
for other rows is dropped with their widget, and a new list of rows starts from the selected run's
row (``selection_default``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping


def table_key(name: str, ids: list[int]) -> str:
    """The widget key of table ``name`` while it shows the rows ``ids``, in this order."""
    digest = hashlib.blake2b(json.dumps([int(i) for i in ids]).encode(), digest_size=8).hexdigest()
    return f"{name}_{digest}"


def selected_row(state: MutableMapping, name: str, ids: list[int]) -> tuple[int | None, str, dict | None]:
    """The selected run of table ``name`` showing ``ids``: ``(run id or None, the widget key, its
    selection_default)``. ``state`` is the session state; ``state[name + "_run"]`` keeps the run."""
    key, remembered = table_key(name, ids), f"{name}_run"
    widget = state.get(key)
    if widget is not None:  # the selection made on these rows, by the user or as set below
        # the browser's widget state (any shape a crafted message sends): a row is an int among the rows
        selection = widget.get("selection") if isinstance(widget, Mapping) else None
        rows = selection.get("rows") if isinstance(selection, Mapping) else None
        row = rows[0] if isinstance(rows, list | tuple) and rows else None
        state[remembered] = ids[row] if type(row) is int and 0 <= row < len(ids) else None
    run_id = state.get(remembered)
    if run_id not in ids:  # deleted, or filtered out
        run_id = state[remembered] = None
    default = {"selection": {"rows": [ids.index(run_id)]}} if run_id is not None else None
    return run_id, key, default
