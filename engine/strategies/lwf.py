import copy

import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Strategy


class LwF(Strategy):
    """Learning without Forgetting (Li & Hoiem, 2017): the model as it was after the previous task is a
    frozen teacher, and a distillation loss keeps the new model's outputs on the old classes close to
    the teacher's, on the current task's data.

    Conventions that differ between libraries, each an option here:
    - the distillation is KL(teacher || student) at temperature T over the classes seen before the
      task, times T^2 (``t_squared``, default; Hinton et al.'s scaling, as van de Ven's ``loss_fn_kd``)
      or not (Avalanche's ``LearningWithoutForgetting``);
    - the cross-entropy on the task's labels covers (``ce_classes``) every output in class-incremental
      learning (``all``, default, as CL Lab always had and Avalanche's fixed head) or the classes seen so
      far, this task's included (``seen``, van de Ven's "active classes"); task-incremental: the task's
      classes either way; domain-incremental: every class."""

    name = "lwf"
    title = "LwF"
    description = "Distils the previous model's outputs on old classes into the new one; no stored data."
    paper = "Li & Hoiem, 2017: Learning without Forgetting"
    hparams = {
        "alpha": HParam(float, 1.0, "weight of the distillation loss", low=0.0, high=100.0),
        "temperature": HParam(float, 2.0, "softmax temperature of the distillation", low=0.1, high=20.0),
        "t_squared": HParam(bool, True, "multiply the distillation by T^2 (default; Hinton's scaling, van de Ven's "
                            "code); false: Avalanche's LwF, without it"),
        "ce_classes": HParam(str, "all", "classes the cross-entropy covers in class-incremental learning: all outputs "
                             "(default, Avalanche) or seen (the classes of the tasks so far, van de Ven)",
                             choices=("all", "seen")),
    }

    @classmethod
    def state_bytes(cls, hparams, weights, sample, n_tasks, task_classes=0):
        return weights  # the frozen teacher

    def setup(self, module, scenario):
        self.task_classes = [task.classes for task in scenario.tasks]
        self.all_classes = scenario.setting == "domain"
        self.class_il = scenario.setting == "class"
        self.teacher = None
        self.unseen = None  # an additive mask of the classes not yet seen, for ce_classes = seen

    def before_task(self, module, experience):
        self.unseen = None  # an additive mask of the classes not yet seen, for ce_classes = seen
        if self.ce_classes == "seen" and self.class_il:
            seen = [c for classes in self.task_classes[: experience.task] for c in classes]
            self.unseen = torch.full((module.n_classes,), float("-inf"), device=experience.t.device)
            self.unseen[seen] = 0.0

    def training_loss(self, module, x, y, t):
        out = module(x)
        loss = F.cross_entropy(module.mask(out, t) if self.unseen is None else out + self.unseen, y)
        if self.teacher is not None:
            with torch.no_grad():
                old = self.teacher(x)[:, self.old_classes]
            new = out[:, self.old_classes]
            T = self.temperature
            distill = F.kl_div(F.log_softmax(new / T, 1), F.log_softmax(old / T, 1), log_target=True,
                               reduction="batchmean") * (T * T if self.t_squared else 1.0)
            loss = loss + self.alpha * distill
        return loss

    def after_task(self, module, experience):
        self.teacher = copy.deepcopy(module.net).eval().requires_grad_(False)
        seen = range(module.n_classes) if self.all_classes else sorted(
            c for classes in self.task_classes[: experience.task] for c in classes)
        self.old_classes = torch.tensor(list(seen), device=experience.t.device)  # t: x would be materialised
