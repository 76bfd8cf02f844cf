"""Small cells: a group with fewer than min_cell_size patients shows "<11" and no metrics,
and no suppressed count can be recovered from the period total, the attribute tables,
the intersection's row and column margins or other shown cells (in the JSON record)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinval import fairness
from clinval.fairness import OVERALL_GROUP, FairnessSettings

EDGES = [35, 45, 55, 65, 70]
AGE_OF_BAND = [40, 50, 60, 67]
SEXES = ["f", "m", None, "x", "y"]  # None: missing, counted as "unknown"; x, y: further groups
SEX_NAME = {s: s for s in SEXES} | {None: "unknown"}
BAND_NAME = ["35-44", "45-54", "55-64", "65-69"]
SMALL = 11
SETTINGS = FairnessSettings(threshold=0.3, tolerance_difference=0.1, tolerance_ratio=0.8)


def log_from_table(table: np.ndarray, *, seed: int = 0, period: str = "1990") -> pd.DataFrame:
    """A prediction log with ``table[i, j]`` patients of sex i in age band j."""
    rng = np.random.default_rng(seed)
    rows = [(SEXES[i], AGE_OF_BAND[j]) for i in range(table.shape[0]) for j in range(table.shape[1])
            for _ in range(int(table[i, j]))]
    log = pd.DataFrame(rows, columns=["sex", "age"])
    risk = rng.uniform(0.05, 0.6, len(log))
    log["predicted_risk"] = risk
    log["label"] = pd.array((rng.random(len(log)) < risk).astype(int), dtype="Int64")
    log["period"] = period
    log["record_id"] = [f"r{i:05d}" for i in range(len(log))]
    return log


def published_counts(rows: list[dict]) -> dict[tuple[str, str], int | str]:
    """(attribute, group) -> shown n, from table rows (one row per group suffices)."""
    return {(r["attribute"], r["group"]): r["n"] for r in rows}


def recoverable(shown: dict[tuple[str, str], int | str], *, sex: str = "sex", band: str = "age_band") -> list:
    """Hidden counts that the published numbers determine exactly.

    Unknowns: every hidden count (and the total, if hidden). Equations: each attribute
    table adds up to the total; each row / column of the intersection adds up to its
    margin in the attribute table. Absent intersection cells are known zeros. A hidden
    count is determined iff its unit vector lies in the row space of the equations.
    """
    inter = f"{sex} × {band}"
    total = next(n for (a, g), n in shown.items() if g == OVERALL_GROUP)
    # every table repeats the whole-period row; it is one number
    unknown = [key for key, n in shown.items() if isinstance(n, str) and key[1] != OVERALL_GROUP]
    if isinstance(total, str):
        unknown.append(("", OVERALL_GROUP))
    position = {key: i for i, key in enumerate(unknown)}
    equations = []

    def equation(members: list[tuple[str, str]], whole: tuple[str, str] | None):
        row = np.zeros(len(unknown))
        for key in members:
            if key in position:
                row[position[key]] += 1
        if whole is None:
            if ("", OVERALL_GROUP) in position:
                row[position[("", OVERALL_GROUP)]] -= 1
        elif whole in position:
            row[position[whole]] -= 1
        equations.append(row)

    sexes = [g for (a, g) in shown if a == sex and g != OVERALL_GROUP]
    bands = [g for (a, g) in shown if a == band and g != OVERALL_GROUP]
    equation([(sex, g) for g in sexes], None)
    equation([(band, g) for g in bands], None)
    cells = [(a, g) for (a, g) in shown if a == inter and g != OVERALL_GROUP]
    for s in sexes:
        equation([c for c in cells if c[1].split(" × ")[0] == s], (sex, s))
    for b in bands:
        equation([c for c in cells if c[1].split(" × ")[1] == b], (band, b))
    a = np.array(equations)
    rank = np.linalg.matrix_rank(a) if len(unknown) else 0
    found = []
    for key, i in position.items():
        unit = np.zeros(len(unknown))
        unit[i] = 1
        if np.linalg.matrix_rank(np.vstack([a, unit])) == rank:
            found.append(key)
    return found


def true_counts(table: np.ndarray) -> dict[tuple[str, str], int]:
    out = {}
    for i in range(table.shape[0]):
        out[("sex", SEX_NAME[SEXES[i]])] = int(table[i].sum())
        for j in range(table.shape[1]):
            out[("sex × age_band", f"{SEX_NAME[SEXES[i]]} × {BAND_NAME[j]}")] = int(table[i, j])
    for j in range(table.shape[1]):
        out[("age_band", BAND_NAME[j])] = int(table[:, j].sum())
    return {k: v for k, v in out.items() if v > 0}


def assert_protected(table: np.ndarray, shown: dict) -> None:
    truth = true_counts(table)
    for key, n in truth.items():
        if n < SMALL:
            assert shown[key] == "<11", (key, n)
        else:
            assert shown[key] == "<11" or shown[key] == n, (key, n, shown[key])
    assert recoverable(shown) == [], (table.tolist(), shown)


def tables(max_rows: int):
    """Sex (up to ``max_rows`` groups) by age band (up to 4) tables, many cells small."""
    return st.integers(1, max_rows).flatmap(lambda r: st.integers(1, 4).flatmap(lambda c: st.lists(
        st.one_of(st.integers(0, 12), st.integers(11, 90)), min_size=r * c, max_size=r * c).map(
        lambda v: np.array(v).reshape(r, c)))).filter(lambda t: t.sum() >= 1)


# ---------------------------------------------------------------------------- counts


def test_small_group_is_hidden_with_a_complement():
    log = log_from_table(np.array([[50, 12, 3, 40]]))
    groups = fairness.sensitive_frame(log, attributes=["age"], bands={"age": EDGES})
    counts = fairness.group_counts(groups)
    shown = dict(zip(counts["group"], counts["n"]))
    assert shown == {OVERALL_GROUP: 105, "35-44": 50, "45-54": "<11", "55-64": "<11", "65-69": 40}


def test_join_of_two_hidden_blocks_is_protected():
    """Each line has two hidden cells, yet two blocks joined by one hidden cell would
    give it away (rows 0 + 2 minus columns 0 + 1 leaves cell (0, 3) = 6): line-by-line
    complementary suppression stops here, so clinval hides more."""
    table = np.array([[20, 1, 48, 6], [25, 22, 5, 1], [2, 1, 19, 17], [43, 46, 13, 40]])
    rows = [(f"s{i}", AGE_OF_BAND[j]) for i in range(4) for j in range(4) for _ in range(int(table[i, j]))]
    log = pd.DataFrame(rows, columns=["sex", "age"])
    groups = fairness.sensitive_frame(log, attributes=["sex", "age"], bands={"age": EDGES})
    counts = fairness.group_counts(groups)
    shown = published_counts(counts.to_dict(orient="records"))
    assert recoverable(shown) == []
    assert shown[("sex × age_band", "s0 × 65-69")] == "<11"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(max_rows=5))
def test_no_suppressed_count_can_be_recovered_from_counts(table):
    log = log_from_table(table)
    groups = fairness.sensitive_frame(log, attributes=["sex", "age"], bands={"age": EDGES})
    counts = fairness.group_counts(groups)
    assert_protected(table, published_counts(counts.to_dict(orient="records")))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(max_rows=3))
def test_no_suppressed_count_can_be_recovered_from_the_json_record(table):
    log = log_from_table(table)
    audit = fairness.audit_over_time(log, attributes=["sex", "age"], bands={"age": EDGES}, settings=SETTINGS)
    record = json.loads(json.dumps(fairness.to_json(audit), allow_nan=False))
    shown = published_counts(record["groups"])
    assert_protected(table, shown)
    for row in record["groups"]:
        if row["n"] == "<11":
            assert row["suppressed"] and row["value"] is None and row["lower"] is None and row["upper"] is None
            assert row["status"].startswith("suppressed: fewer than 11 patients")


# ---------------------------------------------------------------------------- metrics of hidden groups


@pytest.fixture(scope="module")
def small_cells() -> fairness.FairnessAudit:
    table = np.array([[120, 80, 5, 60], [150, 90, 70, 3]])
    log = log_from_table(table, seed=2)
    return fairness.audit_over_time(log, attributes=["sex", "age"], bands={"age": EDGES},
                                    settings=FairnessSettings(threshold=0.3, tolerance_difference=0.1,
                                                              tolerance_ratio=0.8))


def test_hidden_groups_show_no_metrics(small_cells):
    table = small_cells.group_table(period="1990", attribute="sex × age_band")
    hidden = table[table["suppressed"]]
    assert {"f × 55-64", "m × 65-69"} <= set(hidden["group"])
    assert (hidden["n"] == "<11").all()
    assert hidden[["value", "lower", "upper"]].isna().all().all()
    shown = table[~table["suppressed"]]
    assert shown["n"].map(lambda n: isinstance(n, int) and n >= SMALL).all()


def test_disparities_of_hidden_groups_are_not_computed_and_say_why(small_cells):
    disp = small_cells.disparity_table(period="1990", attribute="sex × age_band")
    rows = disp[disp["group"] == "f × 55-64"]
    assert len(rows) > 0
    assert rows["value"].isna().all() and not rows["flagged"].any()
    assert rows["status"].str.startswith("not computed: sex f and age band 55-64 is suppressed").all()
    assert rows["sentence"].str.contains("was not computed").all()


def test_tiny_period_hides_everything_but_does_not_fail():
    log = log_from_table(np.array([[3, 2], [1, 0]]))
    audit = fairness.audit_over_time(log, attributes=["sex", "age"], bands={"age": EDGES}, settings=SETTINGS)
    assert audit.groups["suppressed"].all()
    assert (audit.groups["n"] == "<11").all()
    assert not audit.disparities["flagged"].any()


# ---------------------------------------------------------------------------- counts behind rates


def _derived(record: dict, metric: str) -> dict[tuple[str, str], int | str]:
    """(attribute, group) -> the count a reader recovers as rate × n, or "<11" where the rate is hidden."""
    out = {}
    for row in record["groups"]:
        if row["metric"] != metric:
            continue
        key = (row["attribute"], row["group"])
        out[key] = "<11" if row["value"] is None or isinstance(row["n"], str) else round(row["value"] * row["n"])
    return out


def _true_by_group(log: pd.DataFrame, mask: pd.Series) -> dict[tuple[str, str], tuple[int, int]]:
    """(attribute, group) -> (patients counted by mask, patients in the group)."""
    groups = fairness.sensitive_frame(log, attributes=["sex", "age"], bands={"age": EDGES})
    out = {}
    for column in groups.columns:
        for g, part in mask.groupby(groups[column].astype(str)):
            out[(column, g)] = (int(part.sum()), int(part.size))
    return out


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(max_rows=3))
def test_no_hidden_event_count_can_be_recovered_from_rates_and_n(table):
    """Issue 12: prevalence 0.09 of n = 23 is 2 deaths. Every count a rate and its n reveal
    (events, and patients flagged at the threshold) is at least min_cell_size, zero
    included, and no hidden one follows from the period total and the shown groups."""
    log = log_from_table(table)
    audit = fairness.audit_over_time(log, attributes=["sex", "age"], bands={"age": EDGES}, settings=SETTINGS)
    record = json.loads(json.dumps(fairness.to_json(audit), allow_nan=False))
    flagged = log["predicted_risk"] >= SETTINGS.threshold
    for metric, mask in (("prevalence", log["label"] == 1), ("selection_rate", flagged)):
        shown = _derived(record, metric)
        for key, (count, size) in _true_by_group(log, mask).items():
            if key in shown and (count < SMALL or size - count < SMALL):
                assert shown[key] == "<11", (metric, key, count, size)
        assert recoverable(shown) == [], (metric, table.tolist(), shown)


def test_no_sentence_or_status_names_a_small_count_or_no_events():
    table = np.array([[120, 80, 25, 60], [150, 90, 70, 14]])
    log = log_from_table(table, seed=5)
    log.loc[(log["sex"] == "m") & (log["age"] == 67), "label"] = 0  # nobody in one group died
    audit = fairness.audit_over_time(log, attributes=["sex", "age"], bands={"age": EDGES}, settings=SETTINGS)
    text = json.dumps(fairness.to_json(audit))
    import re

    assert not re.search(r"(?<![\d.])([0-9]|10) (events|non-events)", text)
    assert "no events" not in text and "one outcome class" not in text
