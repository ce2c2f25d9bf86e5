"""The training kernel's run: the loop (``train``), resume checkpoints (``checkpoint``) and the cost
estimate made before a run is queued (``cost``). It never imports the store: ``train_run`` writes only to
a ``MetricSink``."""
