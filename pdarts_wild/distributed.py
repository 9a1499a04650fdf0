"""The processes of a ``torchrun`` job as the tools see them: this one's rank, how many there are, sums over all."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, totals: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``totals`` summed over every process (on the CPU); itself in a single process."""
        if self.world_size == 1:
            return totals
        totals = totals.to(device)
        dist.all_reduce(totals)
        return totals.cpu()


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (single process otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), world_size)
