import torch

from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.regularization import quadratic_penalty, snapshot


class SI(Strategy):
    """Synaptic Intelligence (Zenke, Poole & Ganguli, 2017): while a task trains, each weight's
    contribution to the fall of the loss is integrated along its path, omega += -g x delta-theta at
    every step; at the task's end it becomes importance Omega += omega / ((theta_end - theta_start)^2 + xi),
    and the loss gets c x sum Omega (theta - theta*)^2 (no 0.5, as the paper).

    Which gradient g is (``gradient``): ``total`` (default, as CL Lab always had; Avalanche's and van de
    Ven's code): the gradient the optimizer used, the SI penalty's included; ``unregularised`` (Zenke's
    own code, ganguli-lab/pathint: ``unreg_grads``): the task loss's alone, so that the path integral
    credits a weight only for what it did for the task's loss. The penalty's gradient is 2 c Omega
    (theta - theta*), subtracted in closed form (no second backward pass)."""

    name = "si"
    title = "SI"
    description = "Weighs a quadratic penalty by each weight's path-integral contribution to past losses."
    paper = "Zenke, Poole & Ganguli, 2017: Continual learning through synaptic intelligence"
    hparams = {
        "c": HParam(float, 1.0, "strength of the penalty (the paper's c; loss + c sum Omega d^2). 1 is Mammoth's "
                    "Seq-MNIST best (SGD lr 0.1, batch 10) and does next to nothing on class-incremental Split-Digits "
                    "(0.204 against naive's 0.196; c = 10: 0.247); 100 diverges there at SGD lr 0.05; van de Ven uses 5000 "
                    "(class-IL) and 10 (task-IL) at Adam lr 0.001", low=0.0, high=1e6, log=True),
        "gradient": HParam(str, "total", "g of the path integral: total (default, the penalty's gradient included, as "
                           "Avalanche and van de Ven) or unregularised (the task loss's only, as Zenke's pathint code)",
                           choices=("total", "unregularised")),
        "xi": HParam(float, 0.1, "damping of the normalisation (theta_end - theta_start)^2 + xi (the paper's xi)",
                     low=1e-8, high=10.0, log=True),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.importance: dict[str, torch.Tensor] | None = None
        self.optimum: dict[str, torch.Tensor] | None = None
        self.tracking = False

    def before_task(self, module, experience):
        self.tracking = not self.is_last(experience)  # the last task's path integral is never used
        if self.tracking:
            self.start = snapshot(module.net)
            self.previous = snapshot(module.net)
            self.omega = {n: torch.zeros_like(p) for n, p in self.start.items()}

    def training_loss(self, module, x, y, t):
        loss = module.loss(x, y, t)
        if self.importance is not None:
            loss = loss + self.c * quadratic_penalty(module.net, [(self.importance, self.optimum)])
        return loss

    def after_backward(self, module, batch):
        if self.tracking:
            self.grads = {n: p.grad.detach().clone() for n, p in module.net.named_parameters() if p.grad is not None}
            if self.gradient == "unregularised" and self.importance is not None:
                with torch.no_grad():
                    for n, p in module.net.named_parameters():
                        if n in self.grads:  # minus d/dp of c Omega (p - p*)^2
                            self.grads[n] -= 2 * self.c * self.importance[n] * (p - self.optimum[n])

    @torch.no_grad()
    def after_step(self, module, batch):
        if not self.tracking:
            return
        for n, p in module.net.named_parameters():
            if n in self.grads:
                self.omega[n] -= self.grads[n] * (p - self.previous[n])
            self.previous[n].copy_(p)

    def after_task(self, module, experience):
        if not self.tracking:
            return
        end = snapshot(module.net)
        new = {n: self.omega[n] / ((end[n] - self.start[n]).pow(2) + self.xi) for n in end}
        self.importance = new if self.importance is None else {n: self.importance[n] + new[n] for n in new}
        self.optimum = end
        self.tracking = False
