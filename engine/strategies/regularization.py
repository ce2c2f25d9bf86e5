"""What the weight-regularization strategies (EWC, SI, MAS, L2, rank-1 EWC) share: a snapshot of the
weights, the quadratic penalty sum_i importance_i (theta_i - theta*_i)^2, and per-sample gradients."""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import functional_call, grad, vmap


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in net.named_parameters()}


def quadratic_penalty(net: torch.nn.Module, terms: list[tuple[dict, dict]]) -> torch.Tensor | float:
    """sum over (importance, optimum) terms of sum_i importance_i (theta_i - theta*_i)^2."""
    penalty = 0.0
    params = dict(net.named_parameters())
    for importance, optimum in terms:
        for name, w in importance.items():
            penalty = penalty + (w * (params[name] - optimum[name]).pow(2)).sum()
    return penalty


def per_sample_grads(module, sample_loss: Callable, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                     chunk: int):
    """Yield, chunk by chunk, the gradients of ``sample_loss(logits, y, t)`` for each sample
    separately ({name: (n, *shape)}), vectorised with torch.func.vmap."""
    params = {n: p.detach() for n, p in module.net.named_parameters()}

    def one(p, xi, yi, ti):
        logits = functional_call(module.net, p, (xi.unsqueeze(0),))
        return sample_loss(logits, yi.unsqueeze(0), ti.unsqueeze(0))

    per_sample = vmap(grad(one), in_dims=(None, 0, 0, 0))
    for i in range(0, x.shape[0], chunk):
        yield per_sample(params, x[i:i + chunk], y[i:i + chunk], t[i:i + chunk])
