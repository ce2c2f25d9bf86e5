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
