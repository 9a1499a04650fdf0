"""pytest plugin (``-p timm_suite_plugin``) that runs timm's own ``tests/test_models.py`` on our models.

Importing ``backbones`` registers the pdarts-wild models before timm's test module is collected, so
its ``list_models(...)`` parametrisations include them. Collection then keeps only the tests of our
models: every test function for :data:`FULL_SUITE_MODELS` (or for all our models when the
environment sets ``PDARTS_TIMM_SUITE=full``), and :data:`QUICK_TESTS` for the others.
"""
from __future__ import annotations

import os

import pytest

import backbones  # noqa: F401  (registers the models with timm)
from backbones.timm_pdarts import MODEL_NAMES

QUICK_TESTS = frozenset({"test_model_forward", "test_model_backward", "test_model_forward_features"})
FULL_SUITE_MODELS = frozenset({"pdarts_c10", "pdarts_imagenet"})


def is_selected(test: str, model: str | None) -> bool:
    """Whether timm's test function ``test`` runs for ``model`` (None: a test without a model parameter)."""
    if model not in MODEL_NAMES:
        return False
    return test in QUICK_TESTS or model in FULL_SUITE_MODELS or os.environ.get("PDARTS_TIMM_SUITE") == "full"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (keep if is_selected(item.originalname, params.get("model_name")) else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
