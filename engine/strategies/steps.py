"""How many optimizer steps the loop gives an experience, for methods that act at its last step
(so that the evaluation at the task's end already measures what they did: SLCA's aligned head,
PackNet's pruned network, ACIL's analytic head)."""

import math


def steps_in_task(module, experience) -> int:
    cfg = module.train_cfg
    return module.strategy.task_steps(cfg, math.ceil(len(experience.y) / cfg.batch_size))
