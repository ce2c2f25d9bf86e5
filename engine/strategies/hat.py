import torch
import torch.nn.functional as F
from torch import nn

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.task_routed import TaskRouted


class HAT(Strategy):
    """Hard Attention to the Task (Serra et al., 2018): every unit of every layer of the features
    (a Linear's outputs, a Conv2d's channels) is gated by sigmoid(s * e), with a learned embedding e
    per task. Within each epoch s anneals from 1/s_max to s_max, so the gates end near binary; the
    gradient of a weight is scaled by 1 - min(cumulative attention of its two units), so units that
    earlier tasks use stop changing; a regulariser (weight ``c``) keeps each task's gates sparse on
    units still free. Task-incremental: the task id picks the gates. Defaults and the embedding
    gradient compensation and clamp (6) follow the authors' code (s_max 400, c 0.75). The gate
    multiplies the layer's output before its activation (the same thing for ReLU), or the output of
    the batch norm that follows it; batch-norm running statistics are not protected (the paper's
    networks have none)."""

    name = "hat"
    title = "HAT"
    description = "Per-task hard attention gates on every unit; units earlier tasks use stop changing."
    paper = "Serra, Suris, Miron, Karatzoglou, 2018: Overcoming Catastrophic Forgetting with Hard Attention to the Task"
    settings = ("task",)
    hparams = {
        "s_max": HParam(float, 400.0, "the gates' final scale (the paper's 400)", low=1.0, high=10_000.0, log=True),
        "c": HParam(float, 0.75, "weight of the attention sparsity regulariser (the paper's 0.75)", low=0.0, high=100.0),
    }
    THRES_COSH, THRES_EMB = 50.0, 6.0  # the authors' code: cosh clamp in the compensation, embedding clamp

    def setup(self, module, scenario):
        self.n_tasks = len(scenario.tasks)
        modules = list(module.net.features.modules())
        self.layers = [m for m in modules if isinstance(m, (nn.Linear, nn.Conv2d))]
        # the gate sits on a layer's output, or on the batch norm right after it (which would undo it)
        follows = {id(a): b for a, b in zip(modules, modules[1:])}
        self.sites = [follows[id(m)] if isinstance(follows.get(id(m)), nn.modules.batchnorm._BatchNorm) else m
                      for m in self.layers]
        self.embeddings: list[list[nn.Parameter]] = []  # task -> a vector per layer
        self.cumulative: list[torch.Tensor] | None = None  # max of earlier tasks' gates at s_max
        self.gates: list[torch.Tensor] | None = None  # the gates the forward pass applies now
        for i, site in enumerate(self.sites):
            site.register_forward_hook(lambda m, inp, out, i=i: self.gate(out, i))
        self.task, self.s = 0, self.s_max
        self.routed = TaskRouted(module, lambda x, task: self.forward(module, x, task, self.s_max))

    def gate(self, out, i):
        if self.gates is None:
            return None
        a = self.gates[i]
        return out * a.view(1, -1, *([1] * (out.dim() - 2)))

    def task_gates(self, task: int, s: float) -> list[torch.Tensor]:
        return [torch.sigmoid(s * e) for e in self.embeddings[task]]

    def forward(self, module, x, task: int, s: float):
        if not self.embeddings:  # before the first task (the evaluation at step 0): no gates yet
            return module(x)
        self.gates = self.task_gates(task, s)
        try:
            return module(x)
        finally:
            self.gates = None

    def before_task(self, module, experience):
        if not self.embeddings:  # here the module is on its device
            generator = torch.Generator().manual_seed(self.seed)
            device = next(module.parameters()).device
            self.embeddings = [[nn.Parameter(torch.randn(l.out_features if isinstance(l, nn.Linear) else l.out_channels,
                                                         generator=generator).to(device)) for l in self.layers]
                               for _ in range(self.n_tasks)]
        self.task = experience.task - 1
        self.batches = -(-len(experience.y) // module.train_cfg.batch_size)  # per epoch
        self.step = 0
        self.weight_masks = self.gradient_masks() if self.cumulative is not None else {}

    def parameter_groups(self, module):
        return [{"params": [p for p in module.parameters() if p.requires_grad] + self.embeddings[self.task]}]

    def training_loss(self, module, x, y, t):
        b = self.step % self.batches
        self.step += 1
        self.s = self.s_max if self.batches == 1 else 1 / self.s_max + (self.s_max - 1 / self.s_max) * b / (self.batches - 1)
        gates = self.task_gates(self.task, self.s)
        self.gates = gates
        try:
            loss = F.cross_entropy(module.mask(module(x), t), y)
        finally:
            self.gates = None
        if self.cumulative is None:
            reg = sum(a.sum() for a in gates) / sum(a.numel() for a in gates)
        else:
            reg = sum((a * (1 - c)).sum() for a, c in zip(gates, self.cumulative)) / sum((1 - c).sum() for c in self.cumulative)
        return loss + self.c * reg

    def gradient_masks(self) -> dict[nn.Parameter, torch.Tensor]:
        """1 - min(attention of a weight's output unit, of its input unit), from earlier tasks."""
        masks, previous = {}, None
        for layer, site, out in zip(self.layers, self.sites, self.cumulative):
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            post = out.view(shape).expand_as(layer.weight)
            width = layer.weight.shape[1]
            # the input units are the previous layer's in module order (exact for chains of layers; with
            # residual branches, a width that does not fit leaves the stricter output-only mask)
            if previous is not None and width % len(previous) == 0:
                pre = previous.repeat_interleave(width // len(previous))  # a Linear after a flattened Conv2d
                pre = pre.view((1, -1) + (1,) * (layer.weight.dim() - 2)).expand_as(layer.weight)
                post = torch.min(post, pre)
            masks[layer.weight] = 1 - post
            for bias in (layer.bias, getattr(site, "weight", None), getattr(site, "bias", None)):
                if bias is not None and bias is not layer.weight:  # per-unit parameters
                    masks[bias] = 1 - out
            previous = out
        return masks

    def after_backward(self, module, batch):
        for p, mask in self.weight_masks.items():
            if p.grad is not None:
                p.grad.mul_(mask)
        with torch.no_grad():  # the compensation for the annealed scale (the authors' code)
            for e in self.embeddings[self.task]:
                if e.grad is not None:
                    num = torch.cosh(torch.clamp(self.s * e, -self.THRES_COSH, self.THRES_COSH)) + 1
                    e.grad.mul_(self.s_max / self.s * num / (torch.cosh(e) + 1))

    def after_step(self, module, batch):
        with torch.no_grad():
            for e in self.embeddings[self.task]:
                e.clamp_(-self.THRES_EMB, self.THRES_EMB)

    def after_task(self, module, experience):
        with torch.no_grad():
            gates = self.task_gates(self.task, self.s_max)
            self.cumulative = gates if self.cumulative is None else [torch.max(a, c) for a, c in zip(gates, self.cumulative)]

    def eval_model(self, module):
        return self.routed
