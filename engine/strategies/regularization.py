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



def sum_per_sample_grads(module, sample_loss: Callable, x, y, t, chunk: int, power: int = 2) -> dict[str, torch.Tensor]:
    """sum over samples of |per-sample gradient|^power of ``sample_loss`` (which returns the sum of
    the losses of the rows it is given), for every parameter.

    Where every parameter belongs to an ``nn.Linear`` applied once to (batch, features) inputs (MLPs),
    it is exact in closed form from one batched backward: a Linear's per-sample weight gradient is the
    outer product of its output gradient d_i and input a_i, so sum_i |g_i|^p = |d|^p^T |a|^p (Goodfellow,
    2015, "Efficient per-example gradient computations"), several times faster than vmap. Otherwise,
    vmap'd per-sample gradients."""
    total = {n: torch.zeros_like(p) for n, p in module.net.named_parameters()}
    linears = [m for m in module.net.modules() if isinstance(m, torch.nn.Linear)]
    covered = {id(p) for m in linears for p in m.parameters()}
    if linears and all(id(p) in covered for p in module.net.parameters()):
        names = {id(p): n for n, p in module.net.named_parameters()}
        for i in range(0, x.shape[0], chunk):
            if not _linear_grads(module, linears, names, sample_loss, total, power,
                                 x[i:i + chunk], y[i:i + chunk], t[i:i + chunk]):
                break
        else:
            return total
        total = {n: torch.zeros_like(p) for n, p in module.net.named_parameters()}
    for grads in per_sample_grads(module, sample_loss, x, y, t, chunk):
        for n, g in grads.items():
            total[n] += g.abs().pow(power).sum(0)
    return total


def _linear_grads(module, linears, names, sample_loss, total, power, x, y, t) -> bool:
    """Add one chunk's sum_i |g_i|^power to ``total`` by the closed form; False (nothing added) where
    it does not apply (a Linear used twice, or on inputs that are not (batch, features))."""
    seen: dict[torch.nn.Linear, list] = {m: [] for m in linears}

    def keep(m, inputs, output):
        seen[m].append((inputs[0].detach(), output))

    hooks = [m.register_forward_hook(keep) for m in linears]
    try:
        with torch.enable_grad():
            logits = module.net(x)
    finally:
        for h in hooks:
            h.remove()
    if any(len(v) != 1 or v[0][0].dim() != 2 or v[0][0].shape[0] != x.shape[0] for v in seen.values()):
        return False
    outputs = [v[0][1] for v in seen.values()]
    # the loss is a sum over samples, so row i of an output's gradient is sample i's own
    grads = torch.autograd.grad(sample_loss(logits, y, t), outputs)
    for (m, [(a, _)]), d in zip(seen.items(), grads):
        d = d.abs().pow(power)
        total[names[id(m.weight)]] += d.T @ a.abs().pow(power)
        if m.bias is not None:
            total[names[id(m.bias)]] += d.sum(0)
    return True
