import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.fetril import encode
from engine.strategies.steps import steps_in_task


class SLCA(Strategy):
    """SLCA (Zhang et al., 2023): Slow Learner with Classifier Alignment. The backbone learns at a
    fraction of the head's learning rate; at the end of each task every new class's feature mean and
    covariance are stored, and the head is re-trained on features sampled from every seen class's
    Gaussian (classifier alignment), since the head, trained on the newest classes only, favours them.
    Each task trains with cross-entropy over its own classes only (the other logits masked), as the
    authors' code (GengDavid/SLCA: ``logits[:, known_classes:]``); over every class, the new task's
    loss pushes the old classes' logits down and alignment must undo it. The paper also normalises the
    logits during alignment; this one trains the head with plain cross-entropy (SGD with momentum 0.9,
    as the paper's alignment). The paper's premise is a pre-trained backbone (ViT-B/16 on ImageNet),
    which the slow learning rate preserves; trained from scratch here, the slow backbone learns little
    and the method rests on its head."""

    name = "slca"
    title = "SLCA"
    description = ("A slow backbone and a head re-aligned on features sampled from per-class Gaussians; "
                   "the paper's premise is a pre-trained backbone.")
    paper = "Zhang, Wang, Kang, Chen, Wei, 2023: SLCA: Slow Learner with Classifier Alignment for Continual Learning on a Pre-trained Model"
    settings = ("class",)
    hparams = {
        "backbone_lr_scale": HParam(float, 0.01, "the backbone's learning rate as a share of the head's "
                                    "(the paper: 1e-4 against 1e-2, so 0.01, default)", low=0.0, high=1.0),
        "ca_samples": HParam(int, 256, "features sampled per class for the alignment (the paper's 256)", low=1, high=100_000, log=True),
        "ca_epochs": HParam(int, 5, "epochs of head training over the sampled features (the paper's 5)", low=0, high=1000),
        "ca_lr": HParam(float, 0.01, "learning rate of the alignment (the paper's 0.01)", low=1e-6, high=10.0, log=True),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # class -> (mean, covariance)

    def parameter_groups(self, module):
        lr = module.train_cfg.lr
        return [{"params": list(module.net.features.parameters()), "lr": lr * self.backbone_lr_scale},
                {"params": list(module.head.parameters()), "lr": lr}]

    def setup(self, module, scenario):
        super().setup(module, scenario)
        self.task_classes = [task.classes for task in scenario.tasks]

    def before_task(self, module, experience):
        self.experience = experience
        self.current = torch.zeros(module.n_classes, dtype=torch.bool, device=experience.y.device)
        self.current[self.task_classes[experience.task - 1]] = True  # the classes this task's loss covers
        self.steps_left = steps_in_task(module, experience)

    def training_loss(self, module, x, y, t):
        logits = module(x)
        return F.cross_entropy(logits.masked_fill(~self.current, torch.finfo(logits.dtype).min), y)

    def after_step(self, module, batch):
        self.steps_left -= 1
        if self.steps_left == 0:  # the task's last step: the evaluation at its end sees the aligned head
            self.store_statistics(module, self.experience)
            self.align(module)

    @torch.no_grad()
    def store_statistics(self, module, experience):
        feats = encode(module, experience.x).double()
        for c in sorted(set(experience.y.tolist())):
            f = feats[experience.y == c]
            cov = torch.cov(f.T) if len(f) > 1 else torch.zeros(f.shape[1], f.shape[1], dtype=f.dtype, device=f.device)
            self.stats[c] = (f.mean(0), cov)

    def sample(self, n_per_class: int):
        """Features drawn from each stored class Gaussian N(mean, covariance), with their labels."""
        xs, ys = [], []
        for c, (mean, cov) in self.stats.items():
            jitter = 1e-6 * cov.diagonal().mean().clamp(min=1e-12)  # covariances of few samples are singular
            L = torch.linalg.cholesky(cov + jitter * torch.eye(len(mean), dtype=cov.dtype, device=cov.device))
            z = torch.randn(n_per_class, len(mean), generator=self.generator, dtype=cov.dtype).to(mean.device)
            xs.append(mean + z @ L.T)
            ys.append(torch.full((n_per_class,), c, dtype=torch.long, device=mean.device))
        return torch.cat(xs).float(), torch.cat(ys)

    def align(self, module):
        x, y = self.sample(self.ca_samples)
        head = module.head
        optimizer = torch.optim.SGD(head.parameters(), lr=self.ca_lr, momentum=0.9)
        bs = module.train_cfg.batch_size
        for _ in range(self.ca_epochs):
            order = torch.randperm(len(y), generator=self.generator).to(y.device)
            for i in range(0, len(y), bs):
                idx = order[i:i + bs]
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(head(x[idx]), y[idx]).backward()
                optimizer.step()
