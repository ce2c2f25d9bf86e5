"""The floors that the lab's composition root, the CLI and the chart builders keep (issue 22), read from
the real import graph (grimp, import-linter's, function-local imports counted)."""

import grimp
import pytest


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("engine", "store", "pages", "streamlit", include_external_packages=True)


def test_engine_imports_no_page(graph):
    """The report exporter takes its charts from engine/charts/, not from pages/ui/."""
    upward = graph.find_illegal_dependencies_for_layers(layers=("pages", "engine"), containers=set())
    assert not upward, [(d.importer, d.imported) for d in upward]


def test_chart_builders_import_no_streamlit(graph):
    for module in sorted(graph.find_descendants("engine.charts")):
        assert not graph.chain_exists(module, "streamlit", as_packages=True), module


# What a user does reaches the lab's database only through engine.lab.Lab: these are the store's
# writes and the actions of the run manager, the sweeps and the trade-off curves.
STORE_WRITES = {"write", "add_metrics", "create_run", "update_run", "set_status", "annotate_run", "start_task",
                "end_task", "delete_run", "check_export", "audit", "create_sweep", "rewind_run"}
ACTIONS_BELOW_THE_LAB = {"engine.runs.manager": None, "engine.sweeps.sweep": {"launch_sweep", "cancel_sweep"},
                         "engine.interpolate": {"tradeoff_curve", "compute_tradeoffs"}}


def _front_ends():
    from tests.conftest import ROOT

    return [ROOT / "app.py", *sorted((ROOT / "pages").rglob("*.py")), *sorted((ROOT / "engine" / "cli").rglob("*.py"))]


def test_pages_and_cli_act_only_through_the_lab():
    """Pages and the CLI launch, cancel, resume, annotate, delete, interpolate and export through the
    lab's methods, never by reaching its manager or the store's writes (reads go through lab.store)."""
    import ast

    from tests.conftest import ROOT

    files = _front_ends()
    assert any(f.parts[-2] == "cli" for f in files), "engine/cli/ has no file"
    found = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and node.attr == "manager":
                found.append(f"{where}: .manager")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in STORE_WRITES:
                receiver = node.func.value  # a store: `store`, `lab.store`, `the_lab.store`
                if getattr(receiver, "id", None) == "store" or getattr(receiver, "attr", None) == "store":
                    found.append(f"{where}: store.{node.func.attr}()")
            if isinstance(node, ast.ImportFrom) and node.module in ACTIONS_BELOW_THE_LAB:
                names = ACTIONS_BELOW_THE_LAB[node.module]
                taken = [a.name for a in node.names if names is None or a.name in names]
                if taken:
                    found.append(f"{where}: from {node.module} import {', '.join(taken)}")
    assert not found, found


def test_cli_opens_its_setup_in_one_place():
    """``python -m engine`` is three lines; its commands open the store in engine/cli/setup.py only, and
    a command that trains gets its run manager from ``Lab.for_command``, never builds one."""
    import ast

    from tests.conftest import ROOT

    assert len((ROOT / "engine" / "__main__.py").read_text().splitlines()) == 3
    built = []
    for path in sorted((ROOT / "engine" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Store", "RunManager", "flush_on_signals"):
                built.append((path.name, node.func.id))
    assert built == [("setup.py", "Store")], built
