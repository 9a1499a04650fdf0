"""Ecosystem adapters (timm, MMDetection, torchreid) over pdarts_wild networks.

Importing the package registers the timm models (:mod:`backbones.timm_pdarts`).
"""
from . import timm_pdarts  # noqa: F401  (registers the models with timm)
