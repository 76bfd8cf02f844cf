"""Evidence records: run a notebook with papermill and render it for people and machines.

:func:`run_notebook` executes a notebook with parameters (papermill), then writes three
files next to each other in ``reports/``:

``NN_name.ipynb``  the executed notebook, normalised so the same inputs give the same bytes
``NN_name.html``   a self-contained page (no script, style or font from the network)
``NN_name.json``   every value the notebook showed with :func:`show`, for machines

Inside a notebook, :func:`show` displays a table, an estimate or a sentence *and* tags
it with a key, so the JSON record carries exactly what the HTML shows.

Determinism: papermill runs without timing metadata; the normalising pass removes
per-cell timestamps, gives cells fixed ids, and rewrites absolute paths; matplotlib
writes PNGs whose only metadata is its version; HTML titles are fixed. Each record's
footer names the SHA-256 of every input and the clinval version. *When* a record was
made and who signed it belongs to the audit ledger, not to the record.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinval import __version__, disclosure
from clinval.layout import REFERENCE_DESCRIPTION, STUDY_FILE
from clinval._io import atomic_write_bytes, atomic_write_text, sha256_path
from clinval.errors import ClinvalError, InputError
from clinval.privacy import DEFAULT_MIN_CELL_SIZE

__all__ = ["EVIDENCE_MIME", "NotebookFailed", "RecordPaths", "fill_parameters", "interval_view", "read_record", "run_notebook",
           "show", "to_jsonable"]

EVIDENCE_MIME = "application/vnd.clinval.evidence+json"
"""The output mimetype under which :func:`show` stores a value for the JSON record."""

TEMPLATES = Path(__file__).parent / "templates"
INPUT_SUFFIXES = ("_dir", "_path", "_file")
"""Notebook parameters whose names end like this are input paths; their digests go in the footer."""

_ERR_DUPLICATE_KEY = "{notebook}: show() used the key {key!r} twice; each shown value needs its own key."
_ERR_FAILED = (
    "{notebook} failed in cell {cell} ({ename}: {evalue}). Nothing was written to {reports}; "
    "the executed notebook with the error is at {failed}."
)


class NotebookFailed(ClinvalError, RuntimeError):
    """A notebook raised an error; no record was written."""


# --------------------------------------------------------------------------- show()


def to_jsonable(value: Any) -> Any:
    """Convert results (DataFrames, dataclasses, numpy scalars) into JSON-safe values.

    NaN and infinities become ``null``: the accompanying ``status`` says why.
    """
    if isinstance(value, pd.DataFrame):
        frame = _visible_index(value)
        return [to_jsonable(dict(zip(map(str, frame.columns), row))) for row in frame.itertuples(index=False)]
    if isinstance(value, pd.Series):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if not f.name.startswith("_")}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (int, str)):
        return value
    return str(value)


HUMAN_LABELS = {
    "auroc": "AUROC", "auprc": "AUPRC", "brier": "Brier score", "ppv": "PPV", "o/e": "Observed/expected",
    "observed_expected": "Observed/expected", "psi": "PSI", "psi_critical": "PSI critical value (95th percentile under no drift)",
    "ks": "KS", "q_value": "q-value", "p_value": "p-value", "n": "n", "false_positive_rate": "False-positive rate",
    "psi_excess": "PSI excess", "js": "Jensen-Shannon", "fdr_level": "FDR level", "arl0": "ARL0 (in-control average run length)",
    "min_cell_size": "Smallest count shown", "n_bootstrap": "Bootstrap resamples", "calibration_bins": "Calibration bins",
    "01_reference_profile": "Reference profile", "02_drift_analysis": "Drift analysis", "03_fairness_audit": "Fairness audit",
    "04_revalidation": "Revalidation",
}
"""How identifiers read in a record: metric ids, column names and record names."""
_SHARE_COLUMNS = ("share", "missing", "not_known", "missing_rate")
"""Columns that hold a share of patients: shown as a percentage."""
_P_COLUMNS = ("p_value", "q_value", "p", "q")


def human_label(name: Any) -> str:
    """``false_positive_rate`` -> ``False-positive rate``; known ids from :data:`HUMAN_LABELS`."""
    text = str(name)
    if text.lower() in HUMAN_LABELS:
        return HUMAN_LABELS[text.lower()]
    if " " in text or not text.replace("_", "").isalpha() or not text.islower():
        return text  # a sentence, a period (1993) or a label already written for people
    words = text.replace("_", " ")
    return words[:1].upper() + words[1:]


def _header(column: str) -> str:
    """A table header: its human label, capitalised (``n`` stays ``n``)."""
    text = human_label(column)
    return text if text in ("n", "") or not text[0].islower() else text[0].upper() + text[1:]


def plural(n: int, noun: str, plural_noun: str | None = None) -> str:
    """``plural(1, "alert")`` -> ``"1 alert"``; ``plural(3, "alert")`` -> ``"3 alerts"``."""
    return f"{n} {noun if n == 1 else (plural_noun or noun + 's')}"


def format_number(value: float, *, digits: int = 2) -> str:
    """A number as a reader sees it, rounded to ``digits``; never ``-0.00``."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_interval(value: float, lower: float, upper: float, *, digits: int = 2, confidence: float = 0.95) -> str:
    """``0.78 (95% CI 0.64 to 0.96)``; a degenerate or missing interval is not shown as one."""
    point = format_number(value, digits=digits)
    if lower is None or upper is None or any(map(math.isnan, (lower, upper))) or lower == upper:
        return point
    return f"{point} ({confidence:.0%} CI {format_number(lower, digits=digits)} to {format_number(upper, digits=digits)})"


def format_p(value: float) -> str:
    """p- and q-values in one style: ``0.032``, ``0.0014``, ``<0.0001``."""
    if value < 1e-4:
        return "<0.0001"
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}".rstrip("0").rstrip(".") if value < 1 else "1"


def _format_cell(value: Any, column: str = "") -> tuple[str, str]:
    """(text, css class) for one table cell: shares as %, p-values in one style, never -0.000."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—", "text"
    if isinstance(value, (bool, np.bool_)):
        return ("yes" if value else "no"), "text"
    if isinstance(value, (int, np.integer)):
        return (f"{int(value):,}" if abs(int(value)) >= 10000 else str(int(value))), ""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        name = column.lower()
        if name in _SHARE_COLUMNS or name.endswith("_share"):
            return f"{value:.1%}" if 0 < abs(value) < 0.1 else f"{value:.0%}" if value in (0.0, 1.0) else f"{value:.1%}", ""
        if name in _P_COLUMNS or name.endswith(("_p_value", "_q_value", "_p")):
            return format_p(value), ""
        if value.is_integer() and abs(value) >= 1000:
            return f"{value:,.0f}", ""
        if 0 < abs(value) < 0.001:
            return f"{value:.1e}", ""
        return format_number(value, digits=3), ""
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(map(str, value))), "text"
    if isinstance(value, Mapping):
        return html.escape("; ".join(f"{human_label(k)}: {v}" for k, v in value.items())), "text"
    return html.escape(str(value)), "text"


def _visible_index(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep a meaningful index as columns; drop a plain row-number index (e.g. after filtering)."""
    plain = frame.index.name is None and not isinstance(frame.index, pd.MultiIndex) and pd.api.types.is_integer_dtype(frame.index)
    return frame.reset_index(drop=plain) if not isinstance(frame.index, pd.RangeIndex) else frame


def html_table(frame: pd.DataFrame, *, caption: str | None = None) -> str:
    """A compact HTML table for a record (no index, fixed number formatting)."""
    frame = _visible_index(frame)
    columns = [str(c) for c in frame.columns]
    head = "".join(f"<th>{html.escape(_header(c))}</th>" for c in columns)
    rows = []
    flag = columns.index("flagged") if "flagged" in columns else None
    for row in frame.itertuples(index=False):
        cells = (_format_cell(v, c) for v, c in zip(row, columns))
        marked = ' class="flagged"' if flag is not None and row[flag] is True or (flag is not None and row[flag] is np.True_) else ""
        rows.append(f"<tr{marked}>" + "".join(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>" for text, cls in cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="clinval">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _html_for(value: Any, caption: str | None) -> str:
    if isinstance(value, pd.DataFrame):
        return html_table(value, caption=caption)
    if isinstance(value, pd.Series):
        return html_table(value.rename("value").rename_axis("item").reset_index(), caption=caption)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = to_jsonable(value)
    if isinstance(value, Mapping):
        frame = pd.DataFrame({"item": [human_label(k) for k in value], "value": [v for v in value.values()]})
        return html_table(frame, caption=caption)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) or dataclasses.is_dataclass(v) for v in value):
        rows = [to_jsonable(item) for item in value]
        return html_table(pd.DataFrame(rows), caption=caption)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return "<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in value) + "</ul>"
    text = html.escape(str(value)) if not isinstance(value, (list, tuple)) else html.escape(", ".join(map(str, value))) or "none"
    return f"<p>{text}</p>"


def interval_view(table: pd.DataFrame, *, rows: str | list[str], columns: str, digits: int = 2) -> pd.DataFrame:
    """A compact wide view of a tidy estimates table: one cell per (rows, columns) reading
    ``value (lower to upper)``, or the row's status when it is not ``ok`` (e.g. suppressed,
    insufficient data); a degenerate interval shows the value alone. For people; record
    the tidy table itself with :func:`show`."""

    def cell(r) -> str:
        status = str(r.get("status", "ok"))
        if status != "ok" or pd.isna(r["value"]):
            return status.split(":")[0]
        if pd.isna(r.get("lower")) or pd.isna(r.get("upper")) or r["lower"] == r["upper"]:
            return format_number(r["value"], digits=digits)
        return (f"{format_number(r['value'], digits=digits)} ({format_number(r['lower'], digits=digits)} to "
                f"{format_number(r['upper'], digits=digits)})")

    rows = [rows] if isinstance(rows, str) else list(rows)
    cells = table.assign(_cell=[cell(r) for r in table.to_dict("records")])
    wide = cells.pivot_table(index=rows, columns=columns, values="_cell", aggfunc="first", sort=False)
    wide.columns = [human_label(c) for c in wide.columns]
    return wide.reset_index()


class _Shown:
    """A display bundle: HTML for people, the full value as JSON for the record."""

    def __init__(self, key: str, value: Any, caption: str | None, view: Any, folded: str | None = None):
        self.key, self.value, self.caption, self.view, self.folded = key, value, caption, view, folded

    def _repr_mimebundle_(self, include=None, exclude=None):
        payload = {"key": self.key, "value": to_jsonable(self.value)}
        page = _html_for(self.view, self.caption)
        if self.folded:  # a long table behind its summary line; opens without script, prints open
            page = f'<details class="clinval-fold"><summary>{html.escape(self.folded)}</summary>{page}</details>'
        return {"text/html": page, "text/plain": f"<{self.key}>", EVIDENCE_MIME: payload}


_PUBLICATION = {"min_cell_size": DEFAULT_MIN_CELL_SIZE}
"""The record's smallest publishable count; :func:`fill_parameters` sets it from the notebook's parameters."""


def fill_parameters(namespace: dict, *params_files: str | os.PathLike) -> None:
    """Fill the notebook parameters left ``None`` from the params files of the same names.

    A notebook's parameters cell may leave a study-specific setting ``None`` (e.g. the age
    bands of the fairness audit); the pipeline passes every value, and in JupyterLab this
    call reads the same ``params/*.yaml`` files, so a notebook never needs editing per
    study. A key absent from ``namespace`` is ignored (the file may serve several
    notebooks). Also sets ``min_cell_size`` for every later :func:`show`.
    """
    import yaml

    for file in params_files:
        for key, value in (yaml.safe_load(Path(file).read_text()) or {}).items():
            if key in namespace and namespace[key] is None:
                namespace[key] = value
    if namespace.get("min_cell_size") is not None:
        _PUBLICATION["min_cell_size"] = int(namespace["min_cell_size"])


def show(value: Any, *, key: str, caption: str | None = None, view: Any = None, folded: str | None = None) -> None:
    """Display ``value`` in the notebook and record it under ``key`` in the JSON record.

    ``value`` may be a DataFrame, Series, dataclass, mapping, list of mappings or
    dataclasses, number or sentence. ``view`` is an optional compact presentation of the
    same results for people (e.g. a wide table of "value (lower-upper)" cells); the JSON
    record always holds the full ``value``. ``folded`` puts a long view behind a
    ``<details>`` line reading ``folded`` (no script). Keys ``status`` (a one-line summary for the
    index), ``alerts`` and ``candidates`` are lifted to the top level of the JSON record.

    Every value passes :func:`clinval.disclosure.publishable` first, so nothing a small
    count can be recovered from reaches the page, the JSON twin or the executed notebook.
    """
    from IPython.display import display

    k = _PUBLICATION["min_cell_size"]
    value = disclosure.publishable(value, min_cell_size=k)
    view = value if view is None else disclosure.publishable(view, min_cell_size=k)
    display(_Shown(key, value, caption, view, folded))


# --------------------------------------------------------------------------- running


@dataclasses.dataclass(frozen=True)
class RecordPaths:
    """The three files of one evidence record."""

    notebook: Path
    html: Path
    json: Path


def _path_aliases(root: Path) -> list[tuple[str, str]]:
    """Absolute paths that can leak into outputs (tracebacks, warnings), longest first,
    with the stable text that replaces them: the same record on any machine."""
    import sys

    package = Path(__file__).resolve().parent
    aliases = {str(root.resolve()): ".", str(package): "<clinval>", str(Path(sys.prefix).resolve()): "<python>",
               str(Path(sys.base_prefix).resolve()): "<python>"}
    return sorted(aliases.items(), key=lambda item: -len(item[0]))


def _normalise(nb, *, root: Path, notebook_rel: str, output_rel: str) -> None:
    """Remove everything that differs between two runs on the same inputs."""
    meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration", "exception"):
        meta.pop(key, None)
    meta["input_path"] = notebook_rel
    meta["output_path"] = output_rel
    nb.metadata.pop("widgets", None)
    aliases = _path_aliases(root)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for path, alias in aliases:
                    output["text"] = output["text"].replace(path, alias)


def _collect(nb, notebook_name: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(EVIDENCE_MIME)
            if payload is None:
                continue
            if payload["key"] in values:
                raise NotebookFailed(_ERR_DUPLICATE_KEY.format(notebook=notebook_name, key=payload["key"]))
            values[payload["key"]] = payload["value"]
    return values


def _parameter_text(value: Any) -> str:
    """A parameter as a value a reader recognises: ``35, 55, 65, 70``; ``age: 35, 55, 65, 70``; ``none``."""
    value = to_jsonable(value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_parameter_text(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_parameter_text(v)}" for k, v in value.items()) or "none"
    return str(value)


def _footer(*, inputs: Mapping[str, str], parameters: Mapping[str, Any], notebook: str, min_cell_size: Any) -> str:
    rows = "".join(f'<tr><td><code>{html.escape(p)}</code></td><td class="digest">{d}</td></tr>' for p, d in inputs.items())
    params = "".join(
        f"<tr><td>{html.escape(human_label(k))} (<code>{html.escape(k)}</code>)</td><td>{html.escape(_parameter_text(v))}</td></tr>"
        for k, v in parameters.items()
    )
    privacy = (
        f"Aggregates only; counts below {min_cell_size} are suppressed." if min_cell_size is not None else "Aggregates only."
    )
    return (
        '<footer class="clinval-footer"><strong>Evidence record</strong> made by clinval '
        f"{html.escape(__version__)} from <code>{html.escape(notebook)}</code>. {privacy} "
        "When it was made and who signed it is in the audit ledger (<code>clinval audit show</code>)."
        f"<table><tr><th>Input</th><th>SHA-256</th></tr>{rows}</table>"
        f"<table><tr><th>Parameter</th><th>Value</th></tr>{params}</table></footer>"
    )


def _next_step(record: Mapping[str, Any]) -> str:
    alerts = record.get("alerts") or []
    if alerts:
        verb = "awaits" if len(alerts) == 1 else "await"
        return (f"{plural(len(alerts), 'alert')} {verb} a decision: list them with <code>clinval review list</code>, "
                "then sign <code>clinval review approve</code> or <code>clinval review reject</code>.")
    if record.get("record", "").startswith("04") and not record.get("candidates"):
        return ("No approved alert calls for a modification, so there is nothing to revalidate. To revalidate, "
                "approve an alert (<code>clinval review approve</code>), then run <code>make run</code> again.")
    return "Nothing in this record awaits a decision."


def _findings(record: Mapping[str, Any]) -> str:
    """The box that opens a record: study, verdict, what fired and the next command."""
    study = record.get("study") or {}
    where = ""
    if study.get("name"):
        kind, value = ("data", study.get("data_sha256")) if study.get("data_sha256") else \
            ("reference data", study.get("reference_sha256"))
        digest = f" · {kind} SHA-256 <code>{html.escape(str(value)[:12])}</code>" if value else ""
        where = f'<p class="clinval-study">Study: {html.escape(study["name"])}{digest}</p>'
    alerts = record.get("alerts") or []
    items = "".join(f"<li>{html.escape(str(a.get('summary', a.get('id', ''))))}</li>" for a in alerts[:8])
    if len(alerts) > 8:
        items += f"<li>and {plural(len(alerts) - 8, 'more alert')} (table below).</li>"
    listing = f"<ul>{items}</ul>" if items else ""
    css = "clinval-findings attention" if alerts else "clinval-findings"
    return (f'<section class="{css}">{where}<h2>Findings</h2><p><strong>{html.escape(str(record.get("status", "")))}'
            f"</strong></p>{listing}<p>Next step: {_next_step(record)}</p></section>")


def _render_html(nb, *, title: str, footer: str, findings: str = "") -> str:
    import copy

    import nbformat
    from nbconvert import HTMLExporter

    if findings:  # findings first: right after the record's title, in the page only
        nb = copy.deepcopy(nb)
        box = nbformat.v4.new_raw_cell("", metadata={"clinval_findings": True})  # the template puts the box here
        box["id"] = "findings"
        nb.cells.insert(1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0, box)
    exporter = HTMLExporter(template_name="clinval", extra_template_basedirs=[str(TEMPLATES)])
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}, "clinval_footer": footer,
                                                         "clinval_findings": findings})
    return body


def _study(parameters: Mapping[str, Any], notebook: Path) -> dict[str, Any]:
    """Which study (and which data) a record was made from, from its prepared study: the
    name and the reference's digest from the reference description, the source's digest
    from the whole study (a record made from the reference period alone, like record 01,
    has no source digest: a new production period must not change it)."""
    prepared, described = parameters.get("prepared_dir"), parameters.get("reference_description_file")
    folder = (notebook.parent / prepared) if isinstance(prepared, str) else None
    description = (notebook.parent / described) if isinstance(described, str) else \
        (folder / REFERENCE_DESCRIPTION if folder is not None else None)
    if description is None or not description.exists():
        return {}
    described_metadata = json.loads(description.read_text()).get("metadata", {})
    found = {"name": described_metadata.get("study"), "reference_sha256": described_metadata.get("reference_sha256")}
    if folder is not None and (folder / STUDY_FILE).exists():
        source = json.loads((folder / STUDY_FILE).read_text()).get("metadata", {}).get("source") or {}
        found["data_sha256"] = source.get("sha256")
    return found


def _input_digests(notebook: Path, parameters: Mapping[str, Any], root: Path) -> dict[str, str]:
    digests = {notebook.relative_to(root).as_posix(): sha256_path(notebook)}
    for name, value in parameters.items():
        if name.endswith(INPUT_SUFFIXES) and isinstance(value, str):
            path = (notebook.parent / value).resolve()
            if path.exists() and path.is_relative_to(root):
                digests[path.relative_to(root).as_posix()] = sha256_path(path)
    return digests


def _local_socket_kernel(socket_dir: Path) -> type:
    """A kernel manager talking to the kernel over IPC sockets in a private folder: no
    TCP port is opened, so nothing on the network can read the (patient-level) traffic."""
    from jupyter_client.manager import KernelManager

    class LocalSocketKernelManager(KernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", ip=str(socket_dir / "kernel"), **kwargs)

    return LocalSocketKernelManager


def run_notebook(
    notebook: str | os.PathLike,
    *,
    reports_dir: str | os.PathLike = "reports",
    parameters: Mapping[str, Any] | None = None,
    root: str | os.PathLike = ".",
    title: str | None = None,
    progress: bool = True,
) -> RecordPaths:
    """Execute ``notebook`` with papermill and write its evidence record.

    The notebook runs with its own folder as working directory, exactly as in
    JupyterLab, so its default paths work in both. Nothing is written to
    ``reports_dir`` unless the whole notebook succeeds.

    Raises
    ------
    NotebookFailed
        If a cell raises; the message names the cell and the error, and where the
        executed notebook with the traceback was kept for debugging.
    """
    import nbformat
    import papermill

    root = Path(root).resolve()
    notebook = Path(notebook).resolve()
    reports_dir = Path(reports_dir)
    name = notebook.stem
    parameters = dict(parameters or {})
    defaults = {k: v["default"] for k, v in papermill.inspect_notebook(str(notebook)).items()}
    unknown = sorted(set(parameters) - set(defaults))
    if unknown:
        raise InputError(f"{notebook.name}: parameters {unknown} are not in its parameters cell (it has {sorted(defaults)}).")

    os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
    failed_dir = root / ".clinval" / "failed"
    with tempfile.TemporaryDirectory(prefix="clinval-run-") as tmp:
        executed = Path(tmp) / notebook.name
        try:
            papermill.execute_notebook(
                str(notebook), str(executed), parameters=parameters, cwd=str(notebook.parent),
                progress_bar=progress, record_timing=False, request_save_on_cell_execute=False, kernel_name="python3",
                kernel_manager_class=_local_socket_kernel(Path(tmp)),
                shutdown_kernel="immediate",  # the record is read from the executed notebook, not the kernel: no 0.5 s wait
            )
        except papermill.PapermillExecutionError as exc:
            failed_dir.mkdir(parents=True, exist_ok=True)
            kept = failed_dir / notebook.name
            if executed.exists():
                kept.write_bytes(executed.read_bytes())
            raise NotebookFailed(
                _ERR_FAILED.format(notebook=notebook.name, cell=exc.exec_count, ename=exc.ename, evalue=exc.evalue,
                                   reports=reports_dir, failed=kept.relative_to(root))
            ) from None
        nb = nbformat.read(executed, as_version=4)

    output_rel = (reports_dir / notebook.name).as_posix()
    _normalise(nb, root=root, notebook_rel=notebook.relative_to(root).as_posix(), output_rel=output_rel)
    values = _collect(nb, notebook.name)
    effective = {**{k: _literal(v) for k, v in defaults.items()}, **parameters}
    inputs = _input_digests(notebook, effective, root)
    record = {
        "record": name,
        "title": title or human_label(name),
        "clinval_version": __version__,
        "notebook": notebook.relative_to(root).as_posix(),
        "parameters": to_jsonable(effective),
        "inputs": inputs,
        "study": _study(effective, notebook),
        "status": values.pop("status", "no status line"),
        "alerts": values.pop("alerts", []),
        "candidates": values.pop("candidates", []),
        "values": values,
    }
    footer = _footer(inputs=inputs, parameters=effective, notebook=record["notebook"], min_cell_size=effective.get("min_cell_size"))
    page = _render_html(nb, title=record["title"], footer=footer, findings=_findings(record))

    paths = RecordPaths(notebook=reports_dir / f"{name}.ipynb", html=reports_dir / f"{name}.html", json=reports_dir / f"{name}.json")
    atomic_write_text(paths.notebook, nbformat.writes(nb) + "\n")
    atomic_write_bytes(paths.html, page.encode("utf-8"))
    atomic_write_text(paths.json, json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return paths


def _literal(source: str) -> Any:
    """papermill reports a default as source text ('0.95', '"../data"'); evaluate literals."""
    import ast

    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON evidence record."""
    return json.loads(Path(path).read_text())
