"""Shared test set-up: one OpenMP thread (two are far slower on our 2-core machines), in the tests' processes and
in the tools they start; timm ImageNet checkpoints of the baselines."""
import os
from pathlib import Path
from typing import Callable

import pytest
import timm
import torch

torch.set_num_threads(1)
# The tools the tests start inherit it: `make test` exports it, but a bare `pytest` would leave them two threads
# each, beside the other worker's, and a 20-second search then took over 2 minutes.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def interrupt_search(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``interrupt_search(n)``: the next search stops as Ctrl-C would, when about to start its epoch n (from 0)."""
    from pdarts_wild.search import Search

    def arm(epochs: int) -> None:
        calls = {"n": 0}
        real_epoch = Search._run_epoch

        def epoch_then_die(self: Search, *args: object) -> None:
            if calls["n"] == epochs:
                raise KeyboardInterrupt
            calls["n"] += 1
            real_epoch(self, *args)

        monkeypatch.setattr(Search, "_run_epoch", epoch_then_die)

    return arm


@pytest.fixture(scope="session")
def timm_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tools/train_imagenet.py-style files of timm resnet50 and mobilenetv2_100, BatchNorm statistics randomised."""
    folder, files = tmp_path_factory.mktemp("timm"), {}
    torch.manual_seed(0)
    for arch in ("resnet50", "mobilenetv2_100"):
        model = timm.create_model(arch, num_classes=3)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        files[arch] = folder / f"{arch}.pth"
        torch.save({"state_dict": model.state_dict(), "arch": arch, "model_args": {"num_classes": 3}}, files[arch])
    return files
