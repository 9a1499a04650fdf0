"""Ecosystem adapters (timm, MMDetection, torchreid) over pdarts_wild networks."""
