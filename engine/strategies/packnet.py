import torch
from torch.func import functional_call

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.steps import steps_in_task
from engine.strategies.task_routed import TaskRouted


class PackNet(Strategy):
    """PackNet (Mallya & Lazebnik, 2018): each task trains the weights still free; then, layer by
    layer, the ``prune_ratio`` share of those with the smallest magnitude is released (set to zero,
    free for later tasks), the rest is retrained briefly and frozen for good as this task's. Task t
    is evaluated with the weights of tasks 1..t only, so nothing a task learned changes afterwards
    (task-incremental: the task id picks the weights). The feature layers' weight matrices and kernels
    are pruned; their biases and normalisation layers train on the first task only and stay fixed
    after it, as in the paper. The head is not pruned: the paper and its code (arunmallya/packnet:
    ``model.shared`` pruned, one classifier a task) give each task its own classifier, here the
    shared head's rows (weights and biases) of the task's classes, which train during that task only.
    The prune happens within the task's own steps: the last ``retrain_fraction`` of them retrain."""

    name = "packnet"
    title = "PackNet"
    description = "Prunes each task's weights by magnitude, retrains and freezes them; a task uses only its own and older weights."
    paper = "Mallya, Lazebnik, 2018: PackNet: Adding Multiple Tasks to a Single Network by Iterative Pruning"
    settings = ("task",)
    hparams = {
        "prune_ratio": HParam(float, 0.5, "share of a task's free weights released after it, per layer "
                              "(the paper uses 0.5 and 0.75; default 0.5)", low=0.0, high=0.99),
        "retrain_fraction": HParam(float, 0.3, "share of each task's steps spent retraining after the prune",
                                   low=0.0, high=0.9),
    }

    def setup(self, module, scenario):
        self.task = 1
        self.owner: dict[str, torch.Tensor] = {}  # prunable weight -> 0 free, k: kept by task k
        self.task_classes = [task.classes for task in scenario.tasks]

    def prunable(self, module):
        """The feature layers' weight matrices and kernels (the head is each task's classifier)."""
        head = {id(p) for p in module.head.parameters()}
        return {n: p for n, p in module.net.named_parameters() if p.dim() >= 2 and id(p) not in head}

    def before_task(self, module, experience):
        if not self.owner:  # here the module is on its device
            self.owner = {n: torch.zeros_like(p, dtype=torch.int16) for n, p in self.prunable(module).items()}
        self.task = experience.task
        self.pruned = False
        total = steps_in_task(module, experience)
        self.steps_left = total
        self.prune_when_left = min(round(self.retrain_fraction * total), total - 1)  # prune at least at the end
        self.fix_weights(module)

    def parameter_groups(self, module):
        if self.task == 1:
            return super().parameter_groups(module)
        # the feature layers' biases stay as after task 1; the head's rows of this task train
        return [{"params": list(self.prunable(module).values()) + list(module.head.parameters())}]

    def fix_weights(self, module):
        """What may train now (free weights; after the prune, this task's kept ones) and the values of the rest."""
        self.trainable = {n: self.owner[n] == (self.task if self.pruned else 0) for n in self.owner}
        self.fixed = {n: p.detach().clone() for n, p in self.prunable(module).items()}
        self.head_rows = torch.zeros(module.n_classes, dtype=torch.bool, device=module.head.weight.device)
        self.head_rows[self.task_classes[self.task - 1]] = True  # this task's classifier
        self.head_fixed = [p.detach().clone() for p in module.head.parameters()]

    def training_loss(self, module, x, y, t):
        if self.task > 1:  # normalisation statistics belong to task 1 too
            for m in module.net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return module.loss(x, y, t)

    def after_backward(self, module, batch):
        for n, p in self.prunable(module).items():
            if p.grad is not None:
                p.grad.mul_(self.trainable[n])

    def after_step(self, module, batch):
        with torch.no_grad():  # momentum and weight decay would still move the fixed weights
            for n, p in self.prunable(module).items():
                p.copy_(torch.where(self.trainable[n], p, self.fixed[n]))
            for p, fixed in zip(module.head.parameters(), self.head_fixed):  # other tasks' classifiers
                p[~self.head_rows] = fixed[~self.head_rows]
        self.steps_left -= 1
        if self.steps_left == self.prune_when_left:
            self.prune(module)

    @torch.no_grad()
    def prune(self, module):
        """Per layer, release the ``prune_ratio`` smallest-magnitude free weights; the task keeps the rest."""
        for n, p in self.prunable(module).items():
            free = (self.owner[n] == 0).flatten().nonzero().squeeze(1)
            n_release = round(self.prune_ratio * len(free))
            order = p.flatten()[free].abs().argsort()
            p.view(-1)[free[order[:n_release]]] = 0.0
            self.owner[n].view(-1)[free[order[n_release:]]] = self.task
        self.pruned = True
        self.fix_weights(module)

    def forward_task(self, module, x, task: int):
        if task + 1 >= self.task:  # the task in training (or one not trained yet): the network as it is
            return module(x)
        params = {n: p * ((self.owner[n] > 0) & (self.owner[n] <= task + 1)) for n, p in self.prunable(module).items()}
        return functional_call(module.net, params, (x,))

    def eval_model(self, module):
        if getattr(self, "routed", None) is None:
            self.routed = TaskRouted(module, lambda x, task: self.forward_task(module, x, task))
        return self.routed
