import numpy as np
import quadprog
import torch

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.buffers import BalancedBuffer


def trainable(module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def current_gradient(params) -> torch.Tensor:
    """The gradient in ``p.grad`` of every parameter, flattened into one vector (zeros where unused)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def loss_gradient(loss: torch.Tensor, params) -> torch.Tensor:
    """The gradient of ``loss`` with respect to ``params``, flattened, without touching ``p.grad``."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def set_gradient(params, vector: torch.Tensor) -> None:
    for p, g in zip(params, vector.split([p.numel() for p in params])):
        p.grad = g.view_as(p).clone() if p.grad is None else p.grad.copy_(g.view_as(p))


class GEM(Strategy):
    """Gradient Episodic Memory (Lopez-Paz & Ranzato, 2017): an episodic memory per past task; each step
    computes the gradient of every past task's memory loss, and when the update would increase one of
    them (a negative dot product) projects the gradient onto the closest one that increases none, by
    solving GEM's dual quadratic program with quadprog (as GEM's code does). The memory losses use each
    sample's task mask in the task-incremental setting and every output otherwise (as GEM's code)."""

    name = "gem"
    title = "GEM"
    description = "Projects each update so that no past task's memory loss increases (a quadratic program)."
    paper = "Lopez-Paz & Ranzato, 2017. Gradient Episodic Memory for Continual Learning"
    hparams = {
        "buffer_size": HParam(int, 200, "memory in all; each task keeps buffer_size / tasks samples, filled at "
                              "its end (Mammoth's convention; GEM's paper keeps 256 a task)",
                              low=1, high=100_000, log=True),
        "margin": HParam(float, 0.5, "the QP's margin: a lower bound on the dual variables, which moves the update "
                         "further along the past tasks' gradients (0.5: GEM's memory_strength in its experiments)",
                         low=0.0, high=10.0),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)

    def setup(self, module, scenario):
        per_task = max(1, self.buffer_size // scenario.n_tasks)
        self.memory = BalancedBuffer(self.buffer_size, "experience", self.generator, per_group=per_task)

    def after_backward(self, module, batch):
        if not len(self.memory):
            return
        params = trainable(module)
        g = current_gradient(params)
        G = torch.stack([loss_gradient(module.loss(*task), params) for task in self.memory.groups()])
        if (G @ g < 0).any():
            set_gradient(params, self.project(g, G))

    def project(self, g: torch.Tensor, G: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """The dual QP of GEM: min_v 1/2 v'GG'v + g'G'v subject to v >= margin; the update is G'v + g."""
        memories, gradient = G.double().cpu().numpy(), g.double().cpu().numpy()
        P = memories @ memories.T
        P = 0.5 * (P + P.T) + np.eye(len(P)) * eps  # symmetric and strictly positive definite for quadprog
        v = quadprog.solve_qp(P, -(memories @ gradient), np.eye(len(P)), np.full(len(P), self.margin))[0]
        return torch.from_numpy(v @ memories + gradient).to(g)

    def after_task(self, module, experience):
        self.memory.update(experience.x, experience.y, experience.t)
