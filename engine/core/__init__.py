"""What every part of the lab builds on and that imports nothing of the engine's other parts or the
store: the limits (lab.toml), guarded inputs, devices, declared hyperparameters, and access (principals,
roles, refusals, the access file)."""
