"""Chart builders (Altair and Vega-Lite specs, no Streamlit), below both the pages and the report
exporter: a report's charts are the app's. panels: a run's curves, the accuracy matrix, the Compare
page's panels; pareto: the Pareto chart."""
