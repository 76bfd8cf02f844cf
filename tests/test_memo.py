"""The per-period memo is only an optimisation: a read gives back exactly what a computation gives."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from clinval import memo
from clinval import performance as pf


def _period(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    risk = rng.beta(2, 8, n)
    y = (rng.random(n) < risk).astype(int)
    return y, risk


def _cold(y, risk, monkeypatch, **settings) -> pd.DataFrame:
    monkeypatch.setenv(memo.MEMO_ENV, "off")
    table = pf.evaluate(y, risk, n_bootstrap=200, **settings)
    return table


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.to_json(double_precision=15) == b.to_json(double_precision=15)
    assert [repr(v) for v in a[["value", "lower", "upper"]].to_numpy().ravel()] == \
        [repr(v) for v in b[["value", "lower", "upper"]].to_numpy().ravel()]


def test_warm_read_equals_cold_computation(tmp_path, monkeypatch):
    y, risk = _period(1)
    cold = _cold(y, risk, monkeypatch, seed=5)
    monkeypatch.setenv(memo.MEMO_ENV, str(tmp_path))
    first = pf.evaluate(y, risk, n_bootstrap=200, seed=5)
    assert len(list((tmp_path / "performance.evaluate").glob("*.json"))) == 1
    monkeypatch.setattr(pf, "_evaluate", lambda *a, **k: pytest.fail("a memoised period was recomputed"))
    warm = pf.evaluate(pd.Series(y), pd.Series(risk), n_bootstrap=200, seed=5)  # same content, other container
    _same(cold, first)
    _same(cold, warm)


def test_undefined_values_survive_the_memo(tmp_path, monkeypatch):
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    risk = np.linspace(0.05, 0.6, y.size)
    cold = _cold(y, risk, monkeypatch)
    assert cold["lower"].isna().any()  # too few events for some intervals
    monkeypatch.setenv(memo.MEMO_ENV, str(tmp_path))
    pf.evaluate(y, risk, n_bootstrap=200)
    _same(cold, pf.evaluate(y, risk, n_bootstrap=200))


@pytest.mark.parametrize("change", ["one risk", "one outcome", "seed", "resamples", "confidence"])
def test_any_change_of_rows_or_settings_is_a_new_entry(tmp_path, monkeypatch, change):
    monkeypatch.setenv(memo.MEMO_ENV, str(tmp_path))
    y, risk = _period(2)
    settings = {"seed": 0, "n_bootstrap": 200, "confidence": 0.95}
    pf.evaluate(y, risk, **settings)
    y2, risk2 = y.copy(), risk.copy()
    if change == "one risk":
        risk2[17] = np.nextafter(risk2[17], 1)
    elif change == "one outcome":
        y2[3] = 1 - y2[3]
    elif change == "seed":
        settings["seed"] = 1
    elif change == "resamples":
        settings["n_bootstrap"] = 201
    else:
        settings["confidence"] = 0.9
    warm = pf.evaluate(y2, risk2, **settings)
    assert len(list((tmp_path / "performance.evaluate").glob("*.json"))) == 2
    monkeypatch.setenv(memo.MEMO_ENV, "off")
    _same(pf.evaluate(y2, risk2, **settings), warm)


def test_the_key_covers_the_computing_code(tmp_path):
    source_a, source_b = tmp_path / "a.py", tmp_path / "b.py"
    source_a.write_text("x = 1\n")
    source_b.write_text("x = 2\n")
    assert memo.digest(np.arange(3), source=source_a) != memo.digest(np.arange(3), source=source_b)
    assert memo.digest(np.arange(3)) != memo.digest(np.arange(3).astype(np.int32))


def test_a_damaged_entry_is_recomputed(tmp_path, monkeypatch):
    y, risk = _period(3)
    cold = _cold(y, risk, monkeypatch)
    monkeypatch.setenv(memo.MEMO_ENV, str(tmp_path))
    pf.evaluate(y, risk, n_bootstrap=200)
    (entry,) = (tmp_path / "performance.evaluate").glob("*.json")
    entry.write_text("{not json")
    _same(cold, pf.evaluate(y, risk, n_bootstrap=200))
    json.loads(entry.read_text())  # replaced by a good entry


def test_warnings_are_raised_again_on_a_read(tmp_path, monkeypatch):
    monkeypatch.setenv(memo.MEMO_ENV, str(tmp_path))
    monkeypatch.setattr(memo, "_SHOWN", {})

    def compute():
        warnings.warn("the period is small", RuntimeWarning)
        return pd.DataFrame({"a": [1.5]})

    with pytest.warns(RuntimeWarning, match="the period is small"):
        memo.memoised_table("demo", "k", compute)
    monkeypatch.setattr(memo, "_SHOWN", {})
    with pytest.warns(RuntimeWarning, match="the period is small"):
        table = memo.memoised_table("demo", "k", lambda: pytest.fail("recomputed"))
    assert table["a"].tolist() == [1.5]


def test_the_memo_is_on_only_in_a_pipeline_stage_or_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(memo.MEMO_ENV, raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert memo.memo_dir() is None  # tests, simulations, JupyterLab
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # what DVC sets for a stage's command
    assert memo.memo_dir() == tmp_path / ".clinval" / "memo"
    monkeypatch.setenv(memo.MEMO_ENV, "off")
    assert memo.memo_dir() is None
    monkeypatch.setenv(memo.MEMO_ENV, str(tmp_path / "elsewhere"))
    assert memo.memo_dir() == tmp_path / "elsewhere"


def _segments_frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"sex": rng.choice(["f", "m"], n), "age": rng.integers(35, 70, n).astype(float),
                         "smstat": rng.choice(["c", "n", "x", "nk"], n)})


def test_segment_drift_warm_equals_cold(tmp_path, monkeypatch):
    from clinval import drift, monitor

    reference, current = _segments_frame(1, 600), _segments_frame(2, 300)
    args = dict(reference_key=memo.digest(reference), used=["sex", "age", "smstat"], segment_columns=["sex"],
                numeric=["age"], categorical=["smstat"], settings=drift.DriftSettings())
    monkeypatch.setenv(memo.MEMO_ENV, "off")
    cold = monitor._segment_drift(reference, current, **args)
    monkeypatch.setenv(memo.MEMO_ENV, str(tmp_path))
    first = monitor._segment_drift(reference, current, **args)
    monkeypatch.setattr(drift, "segment_drift", lambda *a, **k: pytest.fail("recomputed"))
    warm = monitor._segment_drift(reference, current.copy(), **args)
    pd.testing.assert_frame_equal(cold, first, check_exact=True)
    pd.testing.assert_frame_equal(cold, warm, check_exact=True)


def test_frame_digest_sees_values_order_and_categories():
    frame = _segments_frame(3, 50)
    base = memo.digest(frame)
    assert memo.digest(frame.copy()) == base
    assert memo.digest(frame.set_axis(range(100, 150))) == base  # the index is not content
    changed = frame.copy()
    changed.loc[7, "age"] += 1e-9
    assert memo.digest(changed) != base
    assert memo.digest(frame.iloc[::-1]) != base
    as_category = frame.assign(sex=pd.Categorical(frame["sex"], categories=["f", "m"]))
    reordered = frame.assign(sex=pd.Categorical(frame["sex"], categories=["m", "f"]))
    assert len({memo.digest(as_category), memo.digest(reordered), base}) == 3


# ---------------------------------------------------------------------------- the fairness audit, period by period


def _fairness_log(periods: list[str]) -> pd.DataFrame:
    from test_fairness_disparities import simulate

    parts = [simulate({"m": 300, "f": 250}, seed=20 + i, period=p, ages=True, miss_events={"f": 0.3 * (i % 2)})
             for i, p in enumerate(periods)]
    return pd.concat(parts, ignore_index=True)


def _audit(log: pd.DataFrame):
    from clinval import fairness
    from test_fairness_disparities import make_settings

    return fairness.to_json(fairness.audit_over_time(log, attributes=["sex", "age"], bands={"age": [35, 50, 60, 70]},
                                                     settings=make_settings()))


def test_fairness_audit_reads_old_periods_and_equals_a_cold_audit(tmp_path, monkeypatch):
    from clinval import fairness_metrics

    old = _fairness_log(["reference", "1990", "1991"])
    grown = pd.concat([old, _fairness_log(["reference", "1990", "1991", "1992"]).query("period == '1992'")],
                      ignore_index=True)
    monkeypatch.setenv(memo.MEMO_ENV, "off")
    cold = _audit(grown)

    monkeypatch.setenv(memo.MEMO_ENV, str(tmp_path))
    _audit(old)
    computed = []
    real = fairness_metrics._estimate_table
    monkeypatch.setattr(fairness_metrics, "_estimate_table", lambda *a: computed.append(a) or real(*a))
    warm = _audit(grown)
    # one table per group column (sex, age band, their intersection) of the new period only
    assert len(computed) == 3
    assert json.dumps(warm, allow_nan=False) == json.dumps(cold, allow_nan=False)
