"""Shared test set-up: one OpenMP thread (two are far slower on our 2-core machines)."""
from typing import Callable

import pytest
import torch

torch.set_num_threads(1)



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
