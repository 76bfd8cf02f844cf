"""Monitoring a deployed model over production periods: one call for notebook 02.

:func:`monitor` compares every production period of a prediction log with the
reference period and returns a :class:`MonitoringReport`: input drift per feature
(:mod:`clinval.drift`), prediction drift, outcome prevalence, discrimination and
calibration with CIs (:mod:`clinval.performance`), label-free estimates (CBPE) next to
the realised values, CUSUM/EWMA charts of the monitored metrics (:mod:`clinval.spc`),
and drift by segment. Plots are in :mod:`clinval.plots.drift`.

References: features are compared with the whole reference period; predicted risk,
performance and the control-chart limits use the reference *hold-out* (records the
model did not see in training), as the deployed model's reference behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clinval import drift, memo, performance, spc
from clinval.data import PreparedStudy
from clinval.evidence import plural
from clinval.fairness_groups import INTERSECTION_SEPARATOR, sensitive_frame
from clinval.profile import build_reference_profile
from clinval.vocabulary import REFERENCE, STATUS_OK

__all__ = ["MONITORED_METRICS", "MonitoringReport", "feature_shares", "monitor"]

MONITORED_METRICS = ("mean predicted risk", "O/E", "AUROC")
"""Metrics on control charts; O/E and AUROC only for labelled periods."""


@dataclass(frozen=True)
class MonitoringReport:
    """Everything notebook 02 shows, as tables (one row per period and item)."""

    periods: tuple[str, ...]
    labelled_periods: tuple[str, ...]
    features: pd.DataFrame          # drift.compare_periods: period x feature
    predictions: pd.DataFrame       # drift.prediction_drift per period
    prevalence: pd.DataFrame        # outcome rate per period vs reference (Newcombe CI, Fisher p)
    performance: pd.DataFrame       # performance.evaluate_periods, reference hold-out first
    estimated: pd.DataFrame         # CBPE per period, with the realised value and `outside` where labels exist
    charts: Mapping[str, Mapping[str, spc.ControlChart]]  # metric -> {"cusum": ..., "ewma": ...}
    segments: pd.DataFrame          # drift.segment_drift per period, with a period column
    settings: drift.DriftSettings
    reference_mean_risk: float      # mean predicted risk on the reference hold-out
    confidence: float = 0.95        # level of every interval

    @property
    def reference_performance(self) -> pd.DataFrame:
        return self.performance[self.performance["period"] == REFERENCE].drop(columns="period")

    @property
    def production_performance(self) -> pd.DataFrame:
        return self.performance[self.performance["period"] != REFERENCE]

    def chart_table(self) -> pd.DataFrame:
        """All control-chart points in one table: metric, chart, period, value, limits, signal."""
        rows = []
        for metric, charts in self.charts.items():
            for kind, chart in charts.items():
                pts = chart.points.assign(metric=metric, chart=kind, target=chart.target, sigma=chart.sigma,
                                          in_control_arl=chart.in_control_arl)
                rows.append(pts)
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()

    def findings(self) -> list[str]:
        """The main results in plain language, one sentence each."""
        out = []
        ref = self.reference_performance.set_index("metric")
        out += _outcome_rate_findings(self.prevalence[self.prevalence["status"] == STATUS_OK])
        risk = self.predictions["mean_predicted_risk"]
        out.append(f"The model's mean predicted risk ranged from {risk.min():.3f} to {risk.max():.3f} across production periods "
                   f"(reference hold-out {self.reference_mean_risk:.3f}).")
        oe = self.production_performance[(self.production_performance["metric"] == "O/E") & (self.production_performance["status"] == STATUS_OK)]
        off = oe[(oe["upper"] < 1) | (oe["lower"] > 1)]
        if not off.empty:
            parts = ", ".join(f"{r['period']} {r['value']:.2f} (95% CI {r['lower']:.2f} to {r['upper']:.2f})" for _, r in off.iterrows())
            word = "over-predicts" if (off["value"] < 1).all() else "mis-predicts"
            out.append(f"Observed/expected events exclude 1 in {plural(len(off), 'period')}: the model {word} risk there ({parts}).")
        elif not oe.empty:
            out.append("Observed/expected events include 1 in every labelled period: no evidence of miscalibration in the large.")
        if "AUROC" in ref.index and ref.loc["AUROC", "status"] == STATUS_OK:
            auc = self.production_performance[(self.production_performance["metric"] == "AUROC") & (self.production_performance["status"] == STATUS_OK)]
            if not auc.empty:
                out.append(f"AUROC ranged from {auc['value'].min():.2f} to {auc['value'].max():.2f} in production "
                           f"(reference hold-out {ref.loc['AUROC', 'value']:.2f}, 95% CI {ref.loc['AUROC', 'lower']:.2f} to {ref.loc['AUROC', 'upper']:.2f}).")
        drifted = self.features[self.features["drifted"]]
        if drifted.empty:
            out.append("No input feature's distribution drifted after false-discovery-rate control.")
        else:
            counts = drifted.groupby("feature", sort=False)["period"].apply(list)
            out.append("Input drift after FDR control: " + "; ".join(f"{f} in {', '.join(map(str, ps))}" for f, ps in counts.items()) + ".")
        out += _data_quality_findings(self.features)
        outside = self.estimated[self.estimated["outside"].eq(True)]
        if not outside.empty:
            parts = "; ".join(f"{r['period']} {r['metric']} {r['realised']:.2f} (interval {r['lower']:.2f} to {r['upper']:.2f})"
                              for _, r in outside.iterrows())
            out.append(f"Realised values outside the label-free {self.confidence:.0%} interval, evidence that the relation "
                       f"between inputs and outcome changed (each comparison does this {1 - self.confidence:.0%} of the time "
                       f"when only the case mix changed): {parts}.")
        return out

    def drift_summary(self) -> pd.DataFrame:
        """Per period: features tested, drifted (FDR), and which; missing-rate changes and new categories."""
        out = []
        for period, rows in self.features.groupby("period", sort=False):
            drifted = rows[rows["drifted"]]["feature"].astype(str).tolist()
            missing = rows[rows["missing_drifted"]]["feature"].astype(str).tolist()
            new = rows[rows["new_level_drifted"]]["feature"].astype(str).tolist()
            out.append({"period": period, "features tested": int((rows["status"] == STATUS_OK).sum()),
                        "drifted (FDR)": len(drifted), "which": ", ".join(drifted) or "none",
                        "missing rate changed": ", ".join(missing) or "none", "new categories": ", ".join(new) or "none"})
        return pd.DataFrame(out)


def _outcome_rate_findings(prevalence: pd.DataFrame) -> list[str]:
    """Every period whose outcome rate differs from the reference (Newcombe CI excludes 0), else the last one."""
    if prevalence.empty:
        return []
    ref_rate = prevalence["prevalence"].iloc[0] - prevalence["difference"].iloc[0]

    def change(r) -> str:
        return (f"{r['period']} {r['prevalence']:.1%} (difference {r['difference'] * 100:+.1f} points, 95% CI "
                f"{r['difference_lower'] * 100:+.1f} to {r['difference_upper'] * 100:+.1f}; Fisher p = {r['p_value']:.2g})")

    shifted = prevalence[(prevalence["difference_lower"] > 0) | (prevalence["difference_upper"] < 0)]
    if shifted.empty:
        last = prevalence.iloc[-1]
        return [f"The outcome rate of no production period differs from the reference's {ref_rate:.1%}; "
                f"the last: {change(last)}."]
    periods = "period" if len(shifted) == 1 else "periods"
    return [f"The outcome rate differs from the reference's {ref_rate:.1%} in {len(shifted)} {periods}: "
            + "; ".join(change(r) for _, r in shifted.iterrows()) + "."]


def _data_quality_findings(features: pd.DataFrame) -> list[str]:
    """Sentences for missing-rate changes and new categories (same FDR family as the drift tests)."""
    out = []
    missing = features[features["missing_drifted"]]
    if not missing.empty:
        parts = "; ".join(f"{r['feature']} in {r['period']} ({r['missing_rate_reference']:.1%} in the reference, "
                          f"{r['missing_rate_current']:.1%} here)" for _, r in missing.iterrows())
        out.append(f"Missing values changed after FDR control: {parts}.")
    new = features[features["new_level_drifted"]]
    if not new.empty:
        parts = "; ".join(f"{r['feature']} in {r['period']} ({plural(r['unseen_categories'], 'new value')}, {r['unseen_rate']:.1%} of rows)"
                          for _, r in new.iterrows())
        out.append(f"Categories unseen in the reference appeared after FDR control: {parts}.")
    if missing.empty and new.empty:
        out.append("No feature's missing rate changed and no category unseen in the reference appeared (FDR-controlled).")
    return out


def _prevalence_rows(log: pd.DataFrame, periods: Sequence[str], labelled: Sequence[str], confidence: float) -> pd.DataFrame:
    ref_y = log.loc[log["period"] == REFERENCE, "label"].astype(int)
    rows = []
    for period in periods:
        if period not in labelled:
            rows.append({"period": period, "prevalence": np.nan, "lower": np.nan, "upper": np.nan, "difference": np.nan,
                         "difference_lower": np.nan, "difference_upper": np.nan, "p_value": np.nan,
                         "status": performance.LABELS_PENDING})
            continue
        y = log.loc[log["period"] == period, "label"].astype(int)
        shift = drift.compare_label_prevalence(ref_y, y, confidence=confidence)
        rows.append({"period": period, "prevalence": shift.current.prevalence, "lower": shift.current.ci_low,
                     "upper": shift.current.ci_high, "difference": shift.difference, "difference_lower": shift.ci_low,
                     "difference_upper": shift.ci_high, "p_value": shift.p_value, "status": shift.status})
    return pd.DataFrame(rows)


def _metric_functions() -> dict[str, callable]:
    # PeriodMetric: the same values as a per-frame call, resampled in blocks by spc (no frame per resample)
    return {name: performance.PeriodMetric(name) for name in MONITORED_METRICS}


def _charts(log: pd.DataFrame, periods: Sequence[str], labelled: Sequence[str], *, seed: int, n_resamples: int,
            false_alarm: float):
    reference = log[log["period"] == REFERENCE]
    functions = _metric_functions()
    charts = {}
    for metric, fn in functions.items():
        use = list(periods) if metric == "mean predicted risk" else list(labelled)
        if not use:
            continue
        frames = [log[log["period"] == p] for p in use]
        size = int(np.median([len(f) for f in frames]))
        control = spc.in_control_from_reference(reference, metric=fn, period_size=size, n_resamples=n_resamples, seed=seed)
        values = [fn(f) for f in frames]
        # limits widened for the reference's own sampling error, to `false_alarm` over the charted periods
        charts[metric] = {
            kind: chart(values, target=control.target, sigma=control.sigma, target_se=control.target_se,
                        sigma_df=control.sigma_df, false_alarm=false_alarm)
            for kind, chart in (("cusum", spc.cusum), ("ewma", spc.ewma))
        }
        for c in charts[metric].values():
            c.points.insert(0, "period", use)
    return charts


def _segment_drift(reference: pd.DataFrame, current: pd.DataFrame, *, reference_key: str, used: list[str],
                   segment_columns: list[str], numeric: list[str], categorical: list[str],
                   settings: drift.DriftSettings) -> pd.DataFrame:
    """:func:`clinval.drift.segment_drift` of one period, memoised (:mod:`clinval.memo`) under
    the content hash of the columns it reads and the settings (per period: its FDR family
    is the period's own)."""
    if not set(used) <= set(current.columns):  # let segment_drift name the missing column
        return drift.segment_drift(reference, current, segment_columns=segment_columns, numeric=numeric,
                                   categorical=categorical, settings=settings)
    key = memo.digest("segment_drift", reference_key, current[used], tuple(segment_columns), tuple(numeric),
                      tuple(categorical), repr(settings))
    return memo.memoised_table("drift.segment_drift", key, lambda: drift.segment_drift(
        reference, current, segment_columns=segment_columns, numeric=numeric, categorical=categorical,
        settings=settings))


def monitor(
    log: pd.DataFrame,
    prepared: PreparedStudy,
    *,
    settings: drift.DriftSettings,
    unlabelled: Sequence[str] = (),
    segment_attributes: Sequence[str] = (),
    bands: Mapping[str, Sequence[float]] | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
    threshold: float | None = None,
    chart_false_alarm: float = 0.05,
) -> MonitoringReport:
    """Compare every production period of ``log`` with the reference period.

    Parameters
    ----------
    log
        The prediction log (reference hold-out and production periods).
    prepared
        The prepared study: the full reference period and the feature schema.
    settings
        Drift decisions (FDR level, bins, minimum n, practical floors).
    unlabelled
        Production periods treated as if their outcomes had not arrived.
    segment_attributes, bands
        Attributes whose groups are segments for drift by segment (e.g. sex and age,
        banded by ``bands`` as in :func:`clinval.fairness.sensitive_frame`); none skips it.
    threshold
        Operating threshold on predicted risk: label-free estimates then include
        sensitivity and specificity at it.
    chart_false_alarm
        Probability of any false signal across the charted periods that the control-chart
        limits allow, given the reference's sampling error (:mod:`clinval.spc`).
    """
    schema = prepared.schema
    periods = tuple(prepared.periods)
    labelled = tuple(p for p in periods if p not in unlabelled and log.loc[log["period"] == p, "label"].notna().any())
    bands = dict(bands or {})
    profile = build_reference_profile(prepared.reference, numeric=list(schema.numeric),
                                      categorical=list(schema.categorical), n_bins=settings.n_bins)
    production = {p: log[log["period"] == p] for p in periods}
    features = drift.compare_periods(profile, production, settings=settings)

    reference_risk = log.loc[log["period"] == REFERENCE, "predicted_risk"]
    predictions = pd.concat(
        [drift.prediction_drift(reference_scores=reference_risk, current_scores=f["predicted_risk"], settings=settings)
         .assign(period=p) for p, f in production.items()], ignore_index=True)
    predictions = predictions[["period", *[c for c in predictions.columns if c != "period"]]]
    predictions["mean_predicted_risk"] = [float(production[p]["predicted_risk"].mean()) for p in predictions["period"]]

    perf = performance.evaluate_periods(log, periods=[REFERENCE, *periods], unlabelled=tuple(unlabelled),
                                        confidence=confidence, n_bootstrap=n_bootstrap, seed=seed)

    reference = log[log["period"] == REFERENCE]
    estimator = performance.PerformanceEstimator.fit(reference["label"].astype(int), reference["predicted_risk"])
    estimated = []
    for p, f in production.items():
        table = estimator.estimate(f["predicted_risk"].to_numpy(), threshold=threshold, confidence=confidence, seed=seed)
        realised = (performance.realised_metrics(f["label"], f["predicted_risk"], threshold=threshold)
                    if p in labelled else None)
        estimated.append(performance.against_realised(table, realised).assign(period=p))
    estimated = pd.concat(estimated, ignore_index=True)
    estimated = estimated[["period", *[c for c in estimated.columns if c != "period"]]]

    charts = _charts(log, periods, labelled, seed=seed, n_resamples=max(200, min(n_bootstrap, 1000)),
                     false_alarm=chart_false_alarm)

    segments = pd.DataFrame()
    if segment_attributes:
        def with_segments(frame: pd.DataFrame) -> pd.DataFrame:
            groups = sensitive_frame(frame, attributes=list(segment_attributes), bands=bands)
            single = [c for c in groups.columns if INTERSECTION_SEPARATOR not in c]
            return frame.assign(**{c: groups[c] for c in single}), single

        reference_segments, columns = with_segments(prepared.reference)
        used = [*columns, *schema.numeric, *schema.categorical]
        reference_key = memo.digest(reference_segments[used])
        frames = [
            _segment_drift(reference_segments, with_segments(f)[0], reference_key=reference_key, used=used,
                           segment_columns=columns, numeric=list(schema.numeric),
                           categorical=list(schema.categorical), settings=settings).assign(period=p)
            for p, f in production.items()
        ]
        segments = pd.concat(frames, ignore_index=True)
        segments = segments[["period", *[c for c in segments.columns if c != "period"]]]

    return MonitoringReport(periods=periods, labelled_periods=labelled, features=features, predictions=predictions,
                            prevalence=_prevalence_rows(log, periods, labelled, confidence), performance=perf,
                            estimated=estimated, charts=charts, segments=segments, settings=settings,
                            reference_mean_risk=float(reference_risk.mean()), confidence=confidence)


def feature_shares(prepared: PreparedStudy, log: pd.DataFrame, *, feature: str, min_cell_size: int,
                   n_bins: int = 5) -> pd.DataFrame:
    """Share of each category (or reference-quantile bin, for a numeric feature) of one
    feature in the reference period and each production period, small cells hidden.

    Columns: ``period``, ``category``, ``n`` (int, or the suppressed label), ``share``
    (``None`` where hidden).
    """
    from clinval.privacy import bin_index, pooled_bin_edges, suppressed_shares

    frames = {REFERENCE: prepared.reference, **{p: log[log["period"] == p] for p in prepared.periods}}
    numeric = feature in prepared.schema.numeric
    if numeric:
        edges = pooled_bin_edges(prepared.reference[feature].dropna().to_numpy(), n_bins=n_bins, min_cell_size=min_cell_size)
        labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    tables = []
    for period, frame in frames.items():
        values = frame[feature]
        if numeric:
            present = values.dropna().to_numpy(dtype=float)
            counts = pd.Series(np.bincount(bin_index(present, edges), minlength=len(labels)), index=labels)
        else:
            counts = values.fillna("(missing)").astype(str).value_counts().sort_index()
        tables.append(suppressed_shares(counts, min_cell_size=min_cell_size).assign(period=period))
    table = pd.concat(tables, ignore_index=True)
    return table[["period", "category", "n", "share"]]
