import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.regularization import quadratic_penalty, snapshot, sum_per_sample_grads


class EWC(Strategy):
    """Elastic Weight Consolidation (Kirkpatrick et al., 2017): after each task, the diagonal of the
    Fisher information at the task's optimum weighs a quadratic penalty that keeps important weights
    near their old values. ``separate`` keeps one penalty per task; ``online`` (Schwarz et al., 2018,
    "Progress & Compress") keeps one running Fisher, decayed by ``decay`` at each new task.

    Two conventions, which differ 4-14x in strength at the same lambda:
    ``per_sample`` (default; Kirkpatrick's form, as CL Lab always had): the empirical Fisher, the mean
    over the task's samples of the squared per-sample gradient, and a penalty 0.5 x lambda x sum F d^2;
    ``minibatch`` (Avalanche's ``EWCPlugin``): the mean over the task's mini-batches (in order, the
    training batch size) of the squared mini-batch gradient, and a penalty lambda x sum F d^2.

    Which labels the log-likelihood's gradient is taken at (``fisher_labels``): ``true`` (default, as CL
    Lab always had; Kirkpatrick's code and Avalanche's): the samples' own labels, the *empirical* Fisher;
    ``sampled``: one label a sample drawn from the model's predictive distribution (softmax of the
    logits the loss sees), an unbiased estimate of the *true* (expected) Fisher, van de Ven's
    ``fisher_labels='sample'`` (GMvandeVen/continual-learning; "On the computation of the Fisher
    Information in continual learning", 2025). van de Ven's Split-MNIST lambdas reach 1e9 (class-IL)
    and 1e10 (domain-IL) with a 0.5 x lambda penalty, so lambda goes up to 1e12."""

    name = "ewc"
    title = "EWC"
    description = "Penalises changes to weights that the Fisher information marks as important for old tasks."
    paper = "Kirkpatrick et al., 2017: Overcoming catastrophic forgetting in neural networks"
    hparams = {
        "ewc_lambda": HParam(float, 100.0, "strength of the penalty (per_sample: x 0.5, Kirkpatrick; minibatch: "
                             "x 1, Avalanche); 100 trains on the default scenario at lr 0.05, 1000 diverges there; "
                             "van de Ven's Split-MNIST uses 1e9 (class-IL) at Adam lr 0.001", low=0.0, high=1e12, log=True),
        "mode": HParam(str, "separate", "separate: a penalty per task; online: one running Fisher",
                       choices=("separate", "online")),
        "decay": HParam(float, 1.0, "online mode: the old Fisher's weight at each new task", low=0.0, high=1.0),
        "fisher": HParam(str, "per_sample", "per_sample (default, Kirkpatrick's empirical Fisher, 0.5 x lambda) or "
                         "minibatch (Avalanche's squared mini-batch gradients, 1 x lambda)",
                         choices=("per_sample", "minibatch")),
        "fisher_labels": HParam(str, "true", "labels of the Fisher's log-likelihood: true (default, the samples' own: "
                                "the empirical Fisher, as Kirkpatrick's and Avalanche's code) or sampled (one a sample "
                                "drawn from the model's softmax: the expected Fisher, van de Ven's 'sample')",
                                choices=("true", "sampled")),
        "fisher_batch": HParam(int, 256, "per_sample: samples per Fisher chunk (memory against "
                               "speed; the result is the same)", low=1, high=8192),
    }

    @classmethod
    def state_bytes(cls, hparams, weights, sample, n_tasks, task_classes=0):
        kept = n_tasks if hparams.get("mode", "separate") == "separate" else 1
        # a Fisher and an optimum per penalty, and the per-sample gradients of one Fisher chunk
        return 2 * kept * weights + int(hparams.get("fisher_batch", 32)) * weights

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)  # the sampled labels
        self.penalties: list[tuple[dict, dict]] = []  # (fisher, optimal weights) per task or one online

    def training_loss(self, module, x, y, t):
        loss = module.loss(x, y, t)
        if self.penalties:
            scale = 0.5 if self.fisher == "per_sample" else 1.0
            loss = loss + scale * self.ewc_lambda * quadratic_penalty(module.net, self.penalties)
        return loss

    def after_task(self, module, experience):
        if self.is_last(experience):
            return  # no later task would use this Fisher
        x, t = experience.x, experience.t
        y = experience.y if self.fisher_labels == "true" else self.sampled_labels(module, x, t)
        fisher = (self.diagonal_fisher if self.fisher == "per_sample" else self.minibatch_fisher)(module, x, y, t)
        if self.mode == "online" and self.penalties:
            old, _ = self.penalties[0]
            fisher = {n: self.decay * old[n] + f for n, f in fisher.items()}
            self.penalties = []
        self.penalties.append((fisher, snapshot(module.net)))

    @torch.no_grad()
    def sampled_labels(self, module, x, t) -> torch.Tensor:
        """One label a sample, drawn from the model's predictive distribution over the outputs its loss
        sees (task-incremental: its task's classes), in chunks of ``fisher_batch`` samples."""
        labels = []
        for i in range(0, x.shape[0], self.fisher_batch):
            probs = F.softmax(module.mask(module.net(x[i:i + self.fisher_batch]), t[i:i + self.fisher_batch]), 1)
            labels.append(torch.multinomial(probs.float().cpu(), 1, generator=self.generator).squeeze(1))
        return torch.cat(labels).to(t.device)

    def diagonal_fisher(self, module, x, y, t) -> dict[str, torch.Tensor]:
        """The mean over the task's samples of the squared per-sample gradient of the log-likelihood
        of label ``y`` (the true labels: the empirical Fisher; sampled ones: the expected), in chunks of samples (closed form for Linear layers)."""
        loss = lambda logits, yi, ti: F.cross_entropy(module.mask(logits, ti), yi, reduction="sum")  # noqa: E731
        fisher = sum_per_sample_grads(module, loss, x, y, t, self.fisher_batch, power=2)
        return {n: f / x.shape[0] for n, f in fisher.items()}

    def minibatch_fisher(self, module, x, y, t) -> dict[str, torch.Tensor]:
        """Avalanche's estimate: the mean over the task's mini-batches, taken in order at the training
        batch size, of the squared gradient of the mini-batch's mean loss."""
        params = dict(module.net.named_parameters())
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        size = module.train_cfg.batch_size
        batches = range(0, x.shape[0], size)
        for i in batches:
            loss = module.loss(x[i:i + size], y[i:i + size], t[i:i + size])
            for (n, _), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()))):
                fisher[n] += g.pow(2)
        return {n: f / len(batches) for n, f in fisher.items()}
