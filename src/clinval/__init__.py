"""clinval: a reproducible validation workbook for clinical risk models.

The package computes; the notebooks in ``notebooks/`` narrate. Public modules:

``data``         load, validate and split a study into reference and production periods
``model``        fit and score the locked model
``performance``  discrimination and calibration with confidence intervals
``evidence``     run a notebook with papermill and render a deterministic HTML record
``report``       the index of evidence records
"""

__version__ = "0.1.0"
