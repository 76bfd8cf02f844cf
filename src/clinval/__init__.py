"""clinval: a reproducible validation workbook for clinical risk models.

The package computes; the notebooks in ``notebooks/`` narrate. Public modules:

``data``         load, validate and split a study into reference and production periods
``model``        fit and score the locked model
``performance``  discrimination and calibration with confidence intervals; CBPE
``profile``      the reference profile and mergeable per-period summaries
``drift``        two-sample drift statistics with FDR-controlled decisions
``spc``          CUSUM and EWMA control charts
``fairness``     group metrics and disparities (fairlearn metrics per group)
``privacy``      small-cell suppression
``pccp``         the change control plan: triggers, modifications, acceptance criteria
``review``       the review queue and signed approvals
``ledger``       the append-only, hash-chained, signed audit ledger; ``signing``: keys, e-signatures
``evidence``     run a notebook with papermill and render a deterministic HTML record
``report``       the index of evidence records
"""

__version__ = "0.1.0"
