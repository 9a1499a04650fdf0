"""Learning-rate schedules of the training tools: P-DARTS' ImageNet schedule and timm's own, per epoch."""
from __future__ import annotations

import torch
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler

SCHEDULES = ("linear", "cosine", "poly")


class PDartsLinearLRScheduler(Scheduler):
    """P-DARTS' ImageNet ``linear`` schedule (its authors' train_imagenet.py), with timm's scheduler interface.

    With E epochs and a tail of T = min(5, E - 1) epochs, epoch e gets lr0 (E-T-e)/(E-T) for e < E-T and
    lr0 (E-e)/(T (E-T)) in the tail: the smaller slope keeps the last epochs above zero (E=250, lr0 0.5:
    0.5 -> 0.00204 at e=244 and 245 -> 0.00041 at e=249). During ``warmup_t`` epochs the scheduled lr is
    scaled by (e+1)/warmup_t (the authors warm up for 5 epochs when the batch exceeds 256).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, t_initial: int, warmup_t: int = 0) -> None:
        if t_initial < 1 or warmup_t < 0:
            raise ValueError(f"need t_initial >= 1 and warmup_t >= 0, got {t_initial} and {warmup_t}")
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=True)
        self.t_initial = t_initial
        self.tail_t = min(5, t_initial - 1)
        self.warmup_t = warmup_t
        self.update_groups(self._get_lr(0))

    def _get_lr(self, t: int) -> list[float]:
        main_t = self.t_initial - self.tail_t
        if t < main_t:
            factor = (main_t - t) / main_t
        else:
            factor = max(self.t_initial - t, 0) / (self.tail_t * main_t)
        if t < self.warmup_t:
            factor *= (t + 1) / self.warmup_t
        return [base * factor for base in self.base_values]


def create_lr_scheduler(optimizer: torch.optim.Optimizer, sched: str, epochs: int, warmup_epochs: int,
                        lr_min: float) -> Scheduler:
    """``linear``: :class:`PDartsLinearLRScheduler`; ``cosine`` / ``poly`` (power 1, i.e. plain linear decay):
    timm's, decaying to ``lr_min``, warming up from lr / warmup_epochs (the authors' first warm-up epoch)."""
    if sched == "linear":
        return PDartsLinearLRScheduler(optimizer, epochs, warmup_epochs)
    if sched not in SCHEDULES:
        raise ValueError(f"unknown schedule {sched!r}: choose one of {', '.join(SCHEDULES)}")
    lr = optimizer.param_groups[0]["lr"]
    scheduler, _ = create_scheduler_v2(optimizer, sched=sched, num_epochs=epochs, min_lr=lr_min, decay_rate=1.0,
                                       warmup_epochs=warmup_epochs, warmup_lr=lr / max(warmup_epochs, 1))
    return scheduler
