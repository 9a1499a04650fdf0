"""Shared test set-up: one OpenMP thread (two are far slower on our 2-core machines)."""
import torch

torch.set_num_threads(1)
