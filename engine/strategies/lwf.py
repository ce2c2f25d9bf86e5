import copy

import torch
import torch.nn.functional as F

from engine.strategies.base import HParam, Strategy


class LwF(Strategy):
    """Learning without Forgetting (Li & Hoiem, 2017): the model as it was after the previous task is a
    frozen teacher, and a distillation loss keeps the new model's outputs on the old classes close to
    the teacher's, on the current task's data."""

    name = "lwf"
    title = "LwF"
    description = "Distils the previous model's outputs on old classes into the new one; no stored data."
    paper = "Li & Hoiem, 2017: Learning without Forgetting"
    hparams = {
        "alpha": HParam(float, 1.0, "weight of the distillation loss", low=0.0, high=100.0),
        "temperature": HParam(float, 2.0, "softmax temperature of the distillation", low=0.1, high=20.0),
    }

    @classmethod
    def state_bytes(cls, hparams, weights, sample, n_tasks, task_classes=0):
        return weights  # the frozen teacher

    def setup(self, module, scenario):
        self.task_classes = [task.classes for task in scenario.tasks]
        self.all_classes = scenario.setting == "domain"
        self.teacher = None

    def training_loss(self, module, x, y, t):
        out = module(x)
        loss = F.cross_entropy(module.mask(out, t), y)
        if self.teacher is not None:
            with torch.no_grad():
                old = self.teacher(x)[:, self.old_classes]
            new = out[:, self.old_classes]
            T = self.temperature
            distill = F.kl_div(F.log_softmax(new / T, 1), F.log_softmax(old / T, 1), log_target=True,
                               reduction="batchmean") * T * T
            loss = loss + self.alpha * distill
        return loss

    def after_task(self, module, experience):
        self.teacher = copy.deepcopy(module.net).eval().requires_grad_(False)
        seen = range(module.n_classes) if self.all_classes else sorted(
            c for classes in self.task_classes[: experience.task] for c in classes)
        self.old_classes = torch.tensor(list(seen), device=experience.t.device)  # t: x would be materialised
