from engine.strategies.base import Strategy


class Naive(Strategy):
    """Fine-tuning: train each task in turn with nothing against forgetting (the lower reference)."""

    name = "naive"
    title = "Naive (fine-tuning)"
    description = "Trains on each task in turn with plain SGD: the lower reference."
