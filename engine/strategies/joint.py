from engine.strategies.base import Experience, HParam, Strategy


class Joint(Strategy):
    """Joint training, the upper reference. ``all`` trains once on every task's data together (as
    Avalanche's JointTraining); ``cumulative`` trains at task k on tasks 1..k, which gives a full
    accuracy matrix and is the reference for intransigence (Chaudhry et al., 2018)."""

    name = "joint"
    title = "Joint (upper reference)"
    description = "Trains on all tasks' data at once: no forgetting, the upper reference."
    hparams = {
        "mode": HParam(str, "all", "all: one pass over every task's data; cumulative: task k trains on tasks 1..k",
                       choices=("all", "cumulative")),
    }

    def experiences(self, scenario):
        per_task = super().experiences(scenario)
        if self.mode == "all":
            groups = [per_task]
        else:
            groups = [per_task[: k + 1] for k in range(len(per_task))]
        return [Experience.join(group, label=f"tasks 1-{group[-1].task}" if len(group) > 1 else "") for group in groups]
