"""Reference profile and mergeable period summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinval.profile import build_reference_profile, merge_summaries, summarise_period


def _frame(seed: int = 0, n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "x": x,
        "age": rng.integers(40, 80, size=n),
        "flag": rng.integers(0, 2, size=n).astype(float),
        "sex": rng.choice(["f", "m", None], size=n, p=[0.45, 0.45, 0.1]),
    })


def test_numeric_profile_matches_numpy():
    frame = _frame()
    profile = build_reference_profile(frame, numeric=["x"], categorical=[])
    p = profile.numeric["x"]
    kept = frame["x"].dropna().to_numpy()
    assert p.n == kept.size and p.n_missing == int(frame["x"].isna().sum())
    np.testing.assert_array_equal(p.sorted_values, np.sort(kept))
    assert p.mean == pytest.approx(kept.mean(), rel=1e-12)
    assert p.sd == pytest.approx(np.std(kept), rel=1e-12)
    q75, q25 = np.quantile(kept, [0.75, 0.25])
    assert p.iqr == pytest.approx(q75 - q25, rel=1e-12)
    assert (p.minimum, p.maximum) == (kept.min(), kept.max())
    # 10 quantile bins of continuous data: all present, counts ~ n / 10
    assert p.bin_counts.size == 10 and p.bin_counts.sum() == p.n
    assert np.all(np.abs(p.bin_counts - p.n / 10) <= 1)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(min_value=-3, max_value=3), min_size=1, max_size=200),
    n_bins=st.integers(min_value=2, max_value=12),
)
def test_every_reference_bin_is_occupied_even_with_ties(values, n_bins):
    frame = pd.DataFrame({"v": np.asarray(values, dtype=float)})
    p = build_reference_profile(frame, numeric=["v"], categorical=[], n_bins=n_bins).numeric["v"]
    assert p.bin_counts.sum() == len(values)
    assert np.all(p.bin_counts > 0)
    assert p.bin_counts.size == p.bin_edges.size + 1 <= n_bins
    # right-closed bins: counts agree with a direct computation
    direct = np.bincount(np.searchsorted(p.bin_edges, frame["v"], side="left"), minlength=p.bin_counts.size)
    np.testing.assert_array_equal(direct, p.bin_counts)


def test_binary_numeric_feature_gets_two_bins():
    frame = pd.DataFrame({"flag": [0.0] * 70 + [1.0] * 30})
    p = build_reference_profile(frame, numeric=["flag"], categorical=[]).numeric["flag"]
    np.testing.assert_array_equal(p.bin_counts, [70, 30])


def test_categorical_profile_counts_missing_separately():
    frame = pd.DataFrame({"sex": ["f", "m", "f", None, np.nan, "f"]})
    p = build_reference_profile(frame, numeric=[], categorical=["sex"]).categorical["sex"]
    assert p.categories == ("f", "m")
    np.testing.assert_array_equal(p.counts, [3, 1])
    assert (p.n, p.n_missing) == (4, 2)


def test_summary_counts_unseen_and_equal_values_across_dtypes():
    reference = pd.DataFrame({"code": [1, 2, 2, 3]})
    current = pd.DataFrame({"code": [1.0, 2.0, 7.0, 7.0, np.nan, 8.0]})  # a CSV with NaN gives floats
    profile = build_reference_profile(reference, numeric=[], categorical=["code"])
    summary = summarise_period(current, profile).categorical["code"]
    np.testing.assert_array_equal(summary.counts, [1, 1, 0])
    assert summary.unseen == {7.0: 2, 8.0: 1}
    assert (summary.n, summary.n_missing, summary.n_unseen) == (5, 1, 3)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.floats(0.0, 1.0))
def test_summary_of_concatenation_equals_merge_of_parts(seed, cut):
    reference = _frame(seed)
    current = _frame(seed + 1, n=300)
    current.loc[current.index[:5], "sex"] = "x"  # unseen category
    profile = build_reference_profile(reference, numeric=["x", "age", "flag"], categorical=["sex"], n_bins=7)
    k = int(cut * len(current))
    whole = summarise_period(current, profile)
    merged = merge_summaries(summarise_period(current.iloc[:k], profile), summarise_period(current.iloc[k:], profile))
    assert merged.n_rows == whole.n_rows
    for name in profile.numeric:
        a, b = whole.numeric[name], merged.numeric[name]
        np.testing.assert_array_equal(a.bin_counts, b.bin_counts)
        assert (a.n, a.n_missing) == (b.n, b.n_missing)
        assert a.total == pytest.approx(b.total, rel=1e-9, abs=1e-9)
    a, b = whole.categorical["sex"], merged.categorical["sex"]
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.unseen == b.unseen and (a.n, a.n_missing) == (b.n, b.n_missing)


def test_merge_refuses_summaries_of_different_profiles():
    frame = _frame()
    one = summarise_period(frame, build_reference_profile(frame, numeric=["x"], categorical=[]))
    other = summarise_period(frame, build_reference_profile(frame, numeric=["age"], categorical=[]))
    with pytest.raises(ValueError, match="different profiles"):
        merge_summaries(one, other)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"numeric": ["nope"], "categorical": []}, KeyError, "'nope'"),
        ({"numeric": ["sex"], "categorical": []}, TypeError, "'sex' is declared numeric"),
        ({"numeric": ["x"], "categorical": ["x"]}, ValueError, "'x' is listed more than once"),
        ({"numeric": [], "categorical": []}, ValueError, "no features"),
        ({"numeric": ["x"], "categorical": [], "n_bins": 1}, ValueError, "n_bins"),
    ],
)
def test_bad_input_names_the_problem(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        build_reference_profile(_frame(), **kwargs)


def test_infinite_values_are_refused_with_the_column_name():
    frame = pd.DataFrame({"x": [1.0, np.inf, 2.0]})
    with pytest.raises(ValueError, match="'x' contains infinite"):
        build_reference_profile(frame, numeric=["x"], categorical=[])


def test_threads_do_not_change_the_profile():
    frame = _frame(3, n=2000)
    one = build_reference_profile(frame, numeric=["x", "age", "flag"], categorical=["sex"], n_threads=1)
    two = build_reference_profile(frame, numeric=["x", "age", "flag"], categorical=["sex"], n_threads=2)
    for name in one.numeric:
        np.testing.assert_array_equal(one.numeric[name].sorted_values, two.numeric[name].sorted_values)
        np.testing.assert_array_equal(one.numeric[name].bin_counts, two.numeric[name].bin_counts)


def test_integer_codes_are_listed_in_numeric_order():
    from clinval.profile import build_reference_profile

    frame = pd.DataFrame({"ward": [str(w) for w in [1, 2, 10, 11, 3] * 20] + ["nk"] * 5})
    profile = build_reference_profile(frame, numeric=[], categorical=["ward"])
    assert list(profile.categorical["ward"].categories) == ["1", "2", "3", "10", "11", "nk"]
