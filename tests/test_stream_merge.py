"""Streamed period counts are mergeable: chunk-merge equals the whole-table result.

Counts (int64) must be identical; float sums may differ only by round-off, checked at a
relative 1e-12 of the sum of absolute values (the bound is (k + log2 n) * 2**-53 for k
merges, about 1e-13 here).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_data import NUMERIC, period_rows, reference_and_log, stream_profile

from clinval import stream
from clinval.profile import summarise_period

ROUND_OFF = 1e-12


@pytest.fixture(scope="module")
def data():
    reference, log = reference_and_log(seed=3)
    # lab is continuous: 100 grid points force its quantile grid (approximate KS); age (~75 values) keeps every value
    profile = stream_profile(reference, max_grid=100, risk_resolution=64)  # a coarse risk grid keeps the test fast
    assert profile.exact_ks == {"age": True, "lab": False, "predicted_risk": False}
    return reference, log, profile


def _close(a, b, scale) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=ROUND_OFF * max(float(np.max(np.abs(scale))), 1.0))


def assert_same_counts(a: stream.PeriodCounts, b: stream.PeriodCounts) -> None:
    """Identical counts, float sums equal to round-off."""
    for x, y in ((a.inputs, b.inputs), (a.prediction, b.prediction)):
        assert x.summary.n_rows == y.summary.n_rows
        assert list(x.summary.numeric) == list(y.summary.numeric)
        for name, u in x.summary.numeric.items():
            v = y.summary.numeric[name]
            np.testing.assert_array_equal(u.bin_counts, v.bin_counts)
            assert (u.n, u.n_missing) == (v.n, v.n_missing)
            _close(u.total, v.total, abs(u.total))
        for name, u in x.summary.categorical.items():
            v = y.summary.categorical[name]
            np.testing.assert_array_equal(u.counts, v.counts)
            assert u.unseen == v.unseen and (u.n, u.n_missing) == (v.n, v.n_missing)
        for name, u in x.ecdf.items():
            v = y.ecdf[name]
            np.testing.assert_array_equal(u.at, v.at)
            np.testing.assert_array_equal(u.between, v.between)
            _close(u.between_sum, v.between_sum, np.abs(u.between_sum).sum())
    p, q = a.performance, b.performance
    for field in ("n_rows", "n_missing_risk", "n_labelled", "events", "risk_resolution"):
        assert getattr(p, field) == getattr(q, field), field
    np.testing.assert_array_equal(p.bin_counts, q.bin_counts)
    for field in ("sum_risk_all", "sum_risk_sq_all", "sum_risk", "sum_squared_error", "sum_squared_error_sq"):
        _close(getattr(p, field), getattr(q, field), getattr(p, field))
    _close(p.bin_logit_sums, q.bin_logit_sums, np.abs(p.bin_logit_sums).sum())


def test_streamed_file_in_small_batches_equals_the_whole_table(tmp_path, data):
    _, log, profile = data
    path = tmp_path / "log.parquet"
    log.to_parquet(path, index=False, row_group_size=1000)
    sizes = []
    streamed = stream.summarise_log(path, profile, batch_rows=333, on_batch=sizes.append)
    whole = stream.summarise_chunk(log, profile)
    assert list(streamed.periods) == list(whole)  # order of first appearance
    assert set(whole) == {"same", "shifted", "late"}
    for period in whole:
        assert_same_counts(streamed.periods[period], whole[period])
    # it really streamed: many batches, none larger than asked, every row seen once
    assert len(sizes) == streamed.n_batches >= 24 and max(sizes) == streamed.largest_batch <= 333
    assert sum(sizes) == streamed.n_rows == len(log)
    assert streamed.n_without_period == 4 == int(log["period"].isna().sum())


def test_counts_of_a_period_are_those_of_profile_summarise_period(data):
    _, log, profile = data
    whole = stream.summarise_chunk(log, profile)
    for period, counts in whole.items():
        rows = period_rows(log, period)
        expected = summarise_period(rows, profile.features)
        summary = counts.inputs.summary
        assert summary.n_rows == expected.n_rows == len(rows)
        for name, u in expected.numeric.items():
            np.testing.assert_array_equal(summary.numeric[name].bin_counts, u.bin_counts)
            assert summary.numeric[name].total == pytest.approx(u.total, rel=1e-14)
        for name, u in expected.categorical.items():
            np.testing.assert_array_equal(summary.categorical[name].counts, u.counts)
            assert summary.categorical[name].unseen == u.unseen
        assert summary.categorical["sex"].n_unseen == (int((rows["sex"] == "u").sum()))


def test_ecdf_and_performance_counts_match_a_direct_count(data):
    _, log, profile = data
    rows = period_rows(log, "late")
    counts = stream.summarise_chunk(log, profile)["late"]
    for name in NUMERIC:
        values, grid = rows[name].dropna().to_numpy(), profile.grids[name]
        ecdf = counts.inputs.ecdf[name]
        np.testing.assert_array_equal(ecdf.at, [(values == g).sum() for g in grid])
        edges = np.concatenate(([-np.inf], grid, [np.inf]))
        inside = [(values > lo) & (values < hi) for lo, hi in zip(edges[:-1], edges[1:])]
        np.testing.assert_array_equal(ecdf.between, [m.sum() for m in inside])
        np.testing.assert_allclose(ecdf.between_sum, [values[m].sum() for m in inside], rtol=1e-13)
    p = counts.performance
    labelled = rows.dropna(subset=["predicted_risk", "label"])
    assert p.n_rows == len(rows) and p.n_missing_risk == int(rows["predicted_risk"].isna().sum())
    assert (p.n_labelled, p.events) == (len(labelled), int(labelled["label"].sum()))
    assert p.sum_squared_error == pytest.approx(float(((labelled["predicted_risk"] - labelled["label"]) ** 2).sum()), rel=1e-13)
    assert p.bin_counts.sum() == len(labelled) and p.bin_counts[1].sum() == p.events


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=2400), max_size=6), order=st.randoms(use_true_random=False))
def test_any_split_merged_in_any_order_equals_the_whole(data, cuts, order):
    _, log, profile = data
    log = log.iloc[:2400]
    bounds = [0, *sorted(cuts), len(log)]
    pieces = [stream.summarise_chunk(log.iloc[a:b], profile) for a, b in zip(bounds[:-1], bounds[1:])]
    order.shuffle(pieces)
    merged: dict = {}
    for piece in pieces:
        merged = stream.merge_chunks(merged, piece)
    whole = stream.summarise_chunk(log, profile)
    assert set(merged) == set(whole)
    for period in whole:
        assert_same_counts(merged[period], whole[period])


def test_a_folder_of_files_equals_one_file(tmp_path, data):
    _, log, profile = data
    folder = tmp_path / "log"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(log)), 3)):
        log.iloc[part].to_parquet(folder / f"part-{i}.parquet", index=False)
    from_folder = stream.summarise_log(folder, profile, batch_rows=1000)
    whole = stream.summarise_chunk(log, profile)
    assert from_folder.n_rows == len(log)
    for period in whole:
        assert_same_counts(from_folder.periods[period], whole[period])


def test_merging_counts_of_different_profiles_is_refused(data):
    reference, log, profile = data
    other = stream_profile(reference, max_grid=16384, risk_resolution=64)  # a different ECDF grid for lab
    a = stream.summarise_chunk(log, profile)["same"]
    b = stream.summarise_chunk(log, other)["same"]
    with pytest.raises(ValueError, match="lab"):
        stream.merge_period_counts(a, b)
    no_prediction = stream.build_stream_profile(profile.features)
    c = stream.summarise_chunk(log, no_prediction)["same"]
    with pytest.raises(ValueError, match="prediction"):
        stream.merge_period_counts(a, c)


def test_integer_periods_keep_their_name_when_some_are_missing(tmp_path, data):
    """An integer period column with a missing value arrives as floats in some batches only."""
    _, log, profile = data
    years = log.assign(period=log["period"].map({"same": 2021, "shifted": 2022, "late": 2023}).astype("Int64"))
    path = tmp_path / "years.parquet"
    years.to_parquet(path, index=False)
    streamed = stream.summarise_log(path, profile, batch_rows=500)  # batches with and without the missing ones
    assert set(streamed.periods) == {"2021", "2022", "2023"}
    assert sum(c.inputs.summary.n_rows for c in streamed.periods.values()) == int(years["period"].notna().sum())
    for name, year in (("same", "2021"), ("late", "2023")):
        assert_same_counts(streamed.periods[year], stream.summarise_chunk(log, profile)[name])
