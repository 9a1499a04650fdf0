"""A search's data: the training set split into a weight half and an architecture half, loaders that shard each
half across processes with a seed per epoch (so a resumed run sees the same batches), and batches on the device."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, DistributedSampler, Subset

from .config import SearchConfig
from .data import build_search_dataset, cutout_of, split_indices
from .distributed import Distributed


class SearchData:
    """The weight half (:attr:`weights`) and architecture half (:attr:`arch`) of ``config``'s dataset."""

    def __init__(self, config: SearchConfig, ddp: Distributed, device: torch.device,
                 memory_format: torch.memory_format) -> None:
        self.config, self.ddp, self.device, self.memory_format = config, ddp, device, memory_format
        dataset, self.info = build_search_dataset(config.dataset, config.data, cutout=config.cutout,
                                                  train_limit=config.train_limit)
        weights_idx, arch_idx = split_indices(len(dataset), config.train_portion)
        self.weights, self.arch = Subset(dataset, weights_idx), Subset(dataset, arch_idx)
        self.cutout = cutout_of(dataset)  # RobustDARTS ramps its probability up with drop-path

    def loader(self, data: Subset, epoch_seed: int, offset: int) -> DataLoader:
        """This process's shard of ``data``, shuffled by the seed ``config.seed + offset`` and ``epoch_seed``."""
        c = self.config
        sampler = DistributedSampler(data, self.ddp.world_size, self.ddp.rank, shuffle=True, seed=c.seed + offset)
        sampler.set_epoch(epoch_seed)
        return DataLoader(data, c.batch_size, sampler=sampler, num_workers=c.workers,
                          pin_memory=self.device.type == "cuda", drop_last=len(data) >= 2 * c.batch_size)

    def batches(self, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``loader``'s batches on the device, endlessly (the architecture half may be shorter than the weight half)."""
        while True:
            for x, y in loader:
                yield (x.to(self.device, non_blocking=True, memory_format=self.memory_format),
                       y.to(self.device, non_blocking=True))

    def images_per_epoch(self, data: Subset) -> int:
        """Images one process passes through in an epoch over ``data`` (the unit of the time-left estimate)."""
        return len(self.loader(data, 0, 0)) * self.config.batch_size

    @torch.no_grad()
    def train_loss(self, model: nn.Module, epoch: int) -> float:
        """Mean cross-entropy of ``model`` on the weight half (its first ``opp_score_batches`` batches, if set, with
        the training augmentation) over every process: OPP-DARTS's score of a supernet. In train mode, with batch
        statistics; BN running statistics and the module's mode are put back afterwards. With ``opp_score_bn =
        "reference"``, ``model`` is scored in the modes its modules are in and keeps the running statistics the
        scoring updates."""
        reference = self.config.opp_score_bn == "reference"
        saved, mode = [] if reference else [b.clone() for b in model.buffers()], model.training
        if not reference:
            model.train()
        loader = self.loader(self.weights, epoch, 2)
        limit = self.config.opp_score_batches
        batches = self.batches(loader)
        totals = torch.zeros(2, dtype=torch.float64)  # loss sum, images
        for _ in range(len(loader) if limit is None else min(limit, len(loader))):
            x, y = next(batches)
            totals += torch.tensor([F.cross_entropy(model(x), y, reduction="sum").item(), y.numel()], dtype=torch.float64)
        if not reference:
            for buffer, value in zip(model.buffers(), saved):
                buffer.copy_(value)
            model.train(mode)
        loss, n = self.ddp.sum(totals, self.device).tolist()
        return loss / n
