"""CL Lab's engine: configs, scenarios, models, strategies, training and the run manager.
Nothing here imports Streamlit."""

__version__ = "0.1.0"
