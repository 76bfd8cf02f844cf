"""The scoring service: the model in force, compiled, behind an HTTP API that logs every answer.

``clinval serve`` answers ``POST /v1/predict`` with the risk the model in force (the
latest promoted model in the audit ledger, else the locked one) gives each record, and
appends every prediction to the prediction log (:mod:`clinval.predlog`) before it
answers. The service decides nothing the review gate decides; it only answers and logs.

Rooms: :mod:`~clinval.serve.scorer` (the pipeline compiled to numpy arithmetic),
:mod:`~clinval.serve.schema` (request models generated from the study schema),
:mod:`~clinval.serve.model_in_force` (which model, checked against its ledger entry),
:mod:`~clinval.serve.app` (the FastAPI application).
"""

from clinval.serve.scorer import CompiledScorer, ModelNotCompilable, ScoredBatch, compile_model

__all__ = ["CompiledScorer", "ModelNotCompilable", "ScoredBatch", "compile_model"]
