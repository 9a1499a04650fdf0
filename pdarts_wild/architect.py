"""The architecture step of DARTS-style searches: first order, or unrolled second order."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from .supernet import Supernet

Batch = tuple[torch.Tensor, torch.Tensor]


class Architect:
    """Updates the supernet's architecture parameters on validation batches.

    First order: the gradient of the validation loss at the current weights. Second order (DARTS'
    ``--unrolled``): the gradient at weights after one virtual SGD step (momentum and weight decay as
    the real optimizer), minus the learning rate times a finite-difference Hessian-vector product.
    Only the architecture parameters' gradients are computed (the weights' would be thrown away: their
    forward pass runs with the weights fixed, which also keeps less for the backward pass), and averaged
    over the processes of a distributed run. ``autocast`` (a context factory) surrounds the forward passes.
    """

    def __init__(
        self,
        model: Supernet,
        optimizer: torch.optim.Optimizer,
        *,
        unrolled: bool = False,
        grad_clip: float = 0.0,
        autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.unrolled = unrolled
        self.grad_clip = grad_clip
        self.autocast = autocast

    def step(self, train: Batch, valid: Batch, lr: float, weight_optimizer: torch.optim.SGD) -> float:
        """One architecture update; returns the validation loss it was computed on."""
        self.optimizer.zero_grad(set_to_none=True)
        alphas = self.model.arch_parameters()
        if self.unrolled:
            # The virtual weights live only inside functional_call: a backward-time recomputation would miss them.
            with self.model.recomputing(False):
                loss = self._second_order_grads(train, valid, lr, weight_optimizer)
        else:
            with self.model.gradients_only_for(alphas):
                with self.autocast():
                    loss = F.cross_entropy(self.model(valid[0]), valid[1])
                loss.backward()
        average_across_ranks([a.grad for a in alphas])
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(alphas, self.grad_clip, foreach=True)
        self.optimizer.step()
        return loss.item()

    def _second_order_grads(self, train: Batch, valid: Batch, lr: float, weight_optimizer: torch.optim.SGD) -> torch.Tensor:
        alphas = self.model.arch_parameters()
        arch = {id(a) for a in alphas}
        names, weights = zip(*((n, p) for n, p in self.model.named_parameters() if id(p) not in arch and p.requires_grad))
        # Virtual forwards see copies of the BN statistics: only real steps move them.
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}

        def loss_at(w: list[torch.Tensor], batch: Batch) -> torch.Tensor:
            with self.autocast():
                logits = functional_call(self.model, ({**dict(zip(names, w)), **buffers}), (batch[0],))
                return F.cross_entropy(logits, batch[1])

        grads = torch.autograd.grad(loss_at(list(weights), train), weights)
        virtual = [
            (w - lr * self._sgd_direction(w, g, weight_optimizer)).detach().requires_grad_() for w, g in zip(weights, grads)
        ]
        valid_loss = loss_at(virtual, valid)
        out = torch.autograd.grad(valid_loss, [*alphas, *virtual])
        alpha_grads, v = out[: len(alphas)], out[len(alphas):]
        eps = 0.01 / torch.cat([t.flatten() for t in v]).norm()
        with torch.no_grad():
            plus = [w + eps * d for w, d in zip(weights, v)]
            minus = [w - eps * d for w, d in zip(weights, v)]
        grad_plus = torch.autograd.grad(loss_at(plus, train), alphas)
        grad_minus = torch.autograd.grad(loss_at(minus, train), alphas)
        for a, g, gp, gm in zip(alphas, alpha_grads, grad_plus, grad_minus):
            a.grad = g - lr * (gp - gm) / (2 * eps)
        return valid_loss.detach()

    @staticmethod
    def _sgd_direction(w: torch.Tensor, grad: torch.Tensor, optimizer: torch.optim.SGD) -> torch.Tensor:
        """What SGD with momentum and weight decay would subtract (times lr) from ``w`` next."""
        group = optimizer.param_groups[0]
        direction = grad + group["weight_decay"] * w
        buffer = optimizer.state.get(w, {}).get("momentum_buffer")
        if buffer is not None:
            direction = direction + group["momentum"] * buffer
        return direction


def average_across_ranks(tensors: list[torch.Tensor]) -> None:
    """Average tensors in place over the processes of a distributed run (no-op otherwise)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for t in tensors:
        dist.all_reduce(t)
        t /= dist.get_world_size()
