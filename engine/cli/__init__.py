"""``python -m engine``: the lab headless, one file a command family (engine/cli/main.py wires them)."""
