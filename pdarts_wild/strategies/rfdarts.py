"""RF-DARTS and RF-PCDARTS (Zhang et al., CVPR 2023): DARTS / PC-DARTS with random features.

The supernet's BatchNorms become affine and every convolution (and the classifier, unless
``rf_train_classifier``) stays at its random initialisation: only BN scales/shifts and the
architecture learn ("only training BatchNorm"). Everything else is the base algorithm.
The paper's own code is not public: these choices follow ``shared/specs/rf-darts.md`` §3.
"""
from __future__ import annotations

from typing import Any, ClassVar

from .darts import DARTS
from .pcdarts import PCDARTS


class RFDARTS(DARTS):
    name = "rf-darts"
    DEFAULTS: ClassVar[dict[str, Any]] = {**DARTS.DEFAULTS, "random_features": True}


class RFPCDARTS(PCDARTS):
    name = "rf-pcdarts"
    DEFAULTS: ClassVar[dict[str, Any]] = {**PCDARTS.DEFAULTS, "random_features": True}
