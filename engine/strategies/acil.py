import torch
import torch.nn.functional as F
from torch import nn

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.steps import steps_in_task


class RecursiveRidge:
    """Ridge regression W = (X'X + gamma I)^-1 X'Y updated batch by batch with the Woodbury identity:
    after any sequence of batches it equals the joint solution on all of them (in float64)."""

    def __init__(self, dim: int, n_out: int, gamma: float, device):
        self.R = torch.eye(dim, dtype=torch.float64, device=device) / gamma  # (X'X + gamma I)^-1
        self.W = torch.zeros(dim, n_out, dtype=torch.float64, device=device)

    def update(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        X, Y = X.double(), Y.double()
        RX = self.R @ X.T
        K = torch.linalg.solve(torch.eye(X.shape[0], dtype=X.dtype, device=X.device) + X @ RX, RX.T)
        self.R -= RX @ K
        self.W += self.R @ X.T @ (Y - X @ self.W)


class AnalyticModel(nn.Module):
    """The frozen features, the random buffer layer and the analytic head: what ACIL predicts with."""

    def __init__(self, features: nn.Module, buffer: nn.Module, ridge: RecursiveRidge):
        super().__init__()
        self.features, self.buffer, self.ridge = features, buffer, ridge

    def embed(self, x):
        return self.buffer(self.features(x))

    def forward(self, x):
        return (self.embed(x).double() @ self.ridge.W).float()


class ACIL(Strategy):
    """Analytic class-incremental learning (Zhuang et al., 2022, ACIL; 2024, G-ACIL): the network
    trains with back-propagation on the first task; then its features are frozen, optionally widened
    by a random ReLU buffer layer, and the head is a ridge regression onto one-hot labels, fitted by
    recursive least squares over every batch seen (task 1's again, then each new one). The head after
    any number of tasks equals ridge regression on all the data seen at once: no forgetting of the
    head, and no stored samples. Later tasks use each sample once (the first epoch); the train_loss
    logged for them is the cross-entropy of the analytic head's outputs on the batch before its update."""

    name = "acil"
    title = "ACIL (analytic learning)"
    description = "Frozen features after task 1 and a recursive least-squares head equal to joint ridge regression."
    paper = "Zhuang, Weng, Wei, Zeng, Lin, 2022: ACIL: Analytic Class-Incremental Learning with Absolute Memorization and Privacy Protection"
    hparams = {
        "gamma": HParam(float, 1.0, "ridge regularisation of the analytic head (default 1, a mid value; "
                        "ACIL tunes it per dataset)", low=1e-6, high=1e6, log=True),
        "buffer_size": HParam(int, 1024, "width of ACIL's random ReLU buffer layer after the frozen features "
                              "(the paper uses 8192 or more behind a ResNet); 0: no buffer layer", low=0, high=16384),
    }

    def setup(self, module, scenario):
        self.ridge = None
        self.analytic = None

    def eval_model(self, module):
        return self.analytic if self.analytic is not None else module

    def before_task(self, module, experience):
        self.experience = experience
        self.unseen = len(experience.y)  # samples of this task not yet in the head (epochs repeat them)
        self.steps_left = steps_in_task(module, experience)

    def observe(self, module, batch, optimizer, backward):
        if self.analytic is None:  # the first task: back-propagation, then the analytic head at its last step
            loss = super().observe(module, batch, optimizer, backward)
            self.steps_left -= 1
            if self.steps_left == 0:
                self.fit_analytic_head(module, self.experience)
            return loss
        x, y, _ = batch
        with torch.no_grad():
            X = self.analytic.eval().embed(x)
            loss = F.cross_entropy((X.double() @ self.ridge.W).float(), y)
            if self.unseen > 0:
                self.ridge.update(X, F.one_hot(y, module.n_classes))
                self.unseen -= len(y)
        return loss

    def fit_analytic_head(self, module, experience):
        module.net.features.requires_grad_(False).eval()
        device = experience.x.device
        if self.buffer_size:
            generator = torch.Generator().manual_seed(self.seed)
            linear = nn.Linear(module.net.feature_dim, self.buffer_size)
            with torch.no_grad():  # a fixed random projection, drawn from the run's seed
                linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) / module.net.feature_dim ** 0.5)
                linear.bias.copy_(torch.randn(linear.bias.shape, generator=generator) * 0.1)
            buffer = nn.Sequential(linear, nn.ReLU()).requires_grad_(False).to(device)
        else:
            buffer = nn.Identity()
        dim = self.buffer_size or module.net.feature_dim
        self.ridge = RecursiveRidge(dim, module.n_classes, self.gamma, device)
        self.analytic = AnalyticModel(module.net.features, buffer, self.ridge).eval()
        with torch.no_grad():  # the first task's data, re-fitted analytically on the frozen features
            for i in range(0, len(experience.y), module.train_cfg.batch_size):
                xb, yb = experience.x[i:i + module.train_cfg.batch_size], experience.y[i:i + module.train_cfg.batch_size]
                self.ridge.update(self.analytic.embed(xb), F.one_hot(yb, module.n_classes))
