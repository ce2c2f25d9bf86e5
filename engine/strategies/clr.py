import torch
import torch.nn.functional as F
from torch import nn

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.task_routed import TaskRouted


def identity_channel_conv(channels: int, kernel_size: int) -> nn.Conv2d:
    """A depthwise (channel-wise) convolution that starts as the identity."""
    conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, kernel_size // 2, kernel_size // 2] = 1.0
        conv.bias.zero_()
    return conv


class CLR(Strategy):
    """Channel-wise Lightweight Reprogramming (Ge et al., 2023): a CNN is frozen (here: trained on the
    first task, which it then serves unchanged), and each later task gets its own lightweight
    reprogramming, a channel-wise convolution after every Conv2d of the features starting as the
    identity, plus its own linear head. Only those train, so no task can disturb another's network
    (task-incremental: the task id picks the reprogramming and the head). Batch-norm statistics stay
    those of the first task."""

    name = "clr"
    title = "CLR (channel-wise reprogramming)"
    description = "A frozen CNN with per-task channel-wise reprogramming layers and heads."
    paper = "Ge, Li, Ni, Wang, Itti, 2023: CLR: Channel-wise Lightweight Reprogramming for Continual Learning"
    settings = ("task",)
    models = ("cnn", "resnet18_reduced", "resnet18")
    hparams = {
        "kernel_size": HParam(int, 3, "kernel of the channel-wise reprogramming convolution (the paper's 3x3; "
                              "1: a channel-wise affine map)", choices=(1, 3)),
    }

    def setup(self, module, scenario):
        self.convs = [m for m in module.net.features.modules() if isinstance(m, nn.Conv2d)]
        if not self.convs:
            raise ValueError(f"strategy clr needs a CNN: model {type(module.net).__name__} has no Conv2d layer in its features")
        self.adapters: dict[int, nn.ModuleList] = {}  # 0-based task -> a reprogramming conv per Conv2d
        self.heads: dict[int, nn.Linear] = {}
        self.active: nn.ModuleList | None = None
        for i, conv in enumerate(self.convs):
            conv.register_forward_hook(lambda m, inp, out, i=i: None if self.active is None else self.active[i](out))
        self.task = 0
        self.routed = TaskRouted(module, lambda x, task: self.forward_task(module, x, task))

    def before_task(self, module, experience):
        self.task = experience.task - 1
        if self.task == 0:
            return  # the first task trains the CNN itself
        module.net.requires_grad_(False)
        device = next(module.net.parameters()).device
        self.adapters[self.task] = nn.ModuleList(
            identity_channel_conv(c.out_channels, self.kernel_size) for c in self.convs).to(device)
        self.heads[self.task] = nn.Linear(module.net.feature_dim, module.n_classes).to(device)

    def parameter_groups(self, module):
        if self.task == 0:
            return super().parameter_groups(module)
        return [{"params": list(self.adapters[self.task].parameters()) + list(self.heads[self.task].parameters())}]

    def forward_task(self, module, x, task: int):
        if task not in self.adapters:  # the first task, or one not trained yet: the CNN as it is
            return module(x)
        self.active = self.adapters[task]
        try:
            return self.heads[task](module.features(x))
        finally:
            self.active = None

    def training_loss(self, module, x, y, t):
        if self.task == 0:
            return module.loss(x, y, t)
        module.net.eval()  # frozen, batch-norm statistics included
        return F.cross_entropy(module.mask(self.forward_task(module, x, self.task), t), y)

    def eval_model(self, module):
        return self.routed
