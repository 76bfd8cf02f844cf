"""Arithmetic on the risk scale, written once for fitting, scoring and serving.

Numpy only, so the serving scorer can import it without scikit-learn. The same formula
everywhere keeps a recalibrated model's risk bit-identical between ``clinval score``, the
revalidation record and ``clinval serve``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLIP", "logit", "recalibrated"]

CLIP = 1e-12
"""Risks are clipped to ``[CLIP, 1 - CLIP]`` before the logit, so 0 and 1 stay finite."""


def logit(p) -> np.ndarray:
    """``log(p / (1 - p))`` of risks clipped to ``[CLIP, 1 - CLIP]``."""
    p = np.clip(np.asarray(p, dtype=float), CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def recalibrated(p, intercept: float, slope: float) -> np.ndarray:
    """Logistic recalibration of risks: ``expit(intercept + slope * logit(p))``."""
    return 1 / (1 + np.exp(-(intercept + slope * logit(p))))
