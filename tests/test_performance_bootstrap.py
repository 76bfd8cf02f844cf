"""The vectorised bootstrap gives the very interval scipy.stats.bootstrap + scikit-learn give."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, brier_score_loss

from clinval import performance as pf


@pytest.fixture(autouse=True)
def _no_memo(monkeypatch):
    monkeypatch.setenv("CLINVAL_MEMO", "off")


def _scipy_interval(fn, y, risk, *, n_bootstrap, seed, needs_both_classes, confidence=0.95):
    """The implementation this module replaced: one scikit-learn call per resample."""

    def statistic(yb, rb):
        if needs_both_classes and yb.min() == yb.max():
            return np.nan
        return fn(yb, rb)

    res = stats.bootstrap((y, risk), statistic, paired=True, vectorized=False, n_resamples=n_bootstrap,
                          confidence_level=confidence, method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _case(seed: int, n: int, prevalence: float, ties: int | None):
    rng = np.random.default_rng(seed)
    risk = rng.random(n)
    if ties:
        risk = np.round(risk * ties) / ties
    y = (rng.random(n) < prevalence).astype(int)
    y[0], y[1] = 1, 0
    return y, risk


CASES = [(1, 40, 0.3, None), (2, 300, 0.15, 10), (3, 500, 0.5, None), (4, 120, 0.05, 4), (5, 2500, 0.2, 100)]


@pytest.mark.parametrize("seed, n, prevalence, ties", CASES)
@pytest.mark.parametrize("metric", ["AUPRC", "Brier"])
def test_interval_is_bitwise_the_scipy_sklearn_interval(seed, n, prevalence, ties, metric):
    y, risk = _case(seed, n, prevalence, ties)
    if metric == "AUPRC":
        got = pf.auprc(y, risk, n_bootstrap=200, seed=seed)
        want = _scipy_interval(average_precision_score, y.astype(np.int8), risk, n_bootstrap=200, seed=seed,
                               needs_both_classes=True)
    else:
        got = pf.brier(y, risk, n_bootstrap=200, seed=seed)
        want = _scipy_interval(brier_score_loss, y.astype(np.int8), risk, n_bootstrap=200, seed=seed,
                               needs_both_classes=False)
    np.testing.assert_array_equal([got.lower, got.upper], want)  # the same floats (or both undefined), not approximately


def test_blocks_of_resamples_draw_the_same_indices(monkeypatch):
    y, risk = _case(7, 900, 0.2, 20)
    whole = pf._bootstrap_distribution("AUPRC", y.astype(np.int8), risk, n_bootstrap=150, seed=3)
    monkeypatch.setattr(pf, "_RESAMPLE_CELLS", 900 * 7)  # 7 resamples per block, the last block shorter
    blocked = pf._bootstrap_distribution("AUPRC", y.astype(np.int8), risk, n_bootstrap=150, seed=3)
    np.testing.assert_array_equal(whole, blocked)


def test_resamples_with_one_class_make_the_auprc_interval_undefined_as_before():
    y, risk = _case(8, 60, 0.02, None)  # 2 events: some resamples draw none
    got = pf.auprc(y, risk, n_bootstrap=300, seed=1)
    with pytest.warns(stats.DegenerateDataWarning):
        want = _scipy_interval(average_precision_score, y.astype(np.int8), risk, n_bootstrap=300, seed=1,
                               needs_both_classes=True)
    assert np.isnan(want).all() and np.isnan([got.lower, got.upper]).all()
