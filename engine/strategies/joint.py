from engine.core.hparams import HParam
from engine.strategies.base import Experience, Strategy


class Joint(Strategy):
    """Joint training, the upper reference. ``all`` trains once on every task's data together (as
    Avalanche's JointTraining); ``cumulative`` trains at task k on tasks 1..k, which gives a full
    accuracy matrix and is the reference for intransigence (Chaudhry et al., 2018). An upper reference
    should be trained to convergence: ``epochs`` gives it a budget of its own (0: the run's
    ``train.epochs_per_task``, as before; on 5-task Split-MNIST-1D, 5 epochs gave 0.361, 50 gave 0.606)."""

    name = "joint"
    title = "Joint (upper reference)"
    description = "Trains on all tasks' data at once: no forgetting, the upper reference."
    hparams = {
        "mode": HParam(str, "all", "all: one pass over every task's data; cumulative: task k trains on tasks 1..k",
                       choices=("all", "cumulative")),
        "epochs": HParam(int, 0, "epochs over the joined data (0: the run's budget, train.epochs_per_task or iterations_per_task); an upper "
                         "reference trains to convergence", low=0, high=10_000),
    }

    def epochs_per_experience(self, train_cfg):
        return self.epochs or None  # 0: the run's budget

    def experiences(self, scenario):
        per_task = super().experiences(scenario)
        if self.mode == "all":
            groups = [per_task]
        else:
            groups = [per_task[: k + 1] for k in range(len(per_task))]
        return [Experience.join(group, label=f"tasks 1-{group[-1].task}" if len(group) > 1 else "") for group in groups]
