"""The FastAPI application: ``/v1/predict``, ``/healthz``, ``/metrics``, ``/v1/log/roll``.

``POST /v1/predict`` validates the body against the study's request model, scores every
record with the compiled model in force, hands one line to the prediction log and
answers only after the log has flushed it (group commit). If the log cannot write, the
answer is 503 and no risk is returned: nothing is answered that is not logged.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from clinval import __version__
from clinval.metrics import ServiceMetrics
from clinval.predlog import PASS_THROUGH, LogUnavailable, PredictionLog, encode_request
from clinval.serve.model_in_force import ModelInForce
from clinval.serve.schema import RequestSchema, problems

__all__ = ["Service", "create_app"]

_JSON = "application/json"


@dataclass(frozen=True)
class Service:
    """What the application serves with: built and checked before it starts."""

    model: ModelInForce
    requests: RequestSchema
    log: PredictionLog
    metrics: ServiceMetrics


def create_app(service: Service) -> FastAPI:
    """The application; the prediction log is started and recovered by the caller and
    closed (its open segment sealed) when the application shuts down."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(service.log.close)

    app = FastAPI(title="clinval scoring service", version=__version__, lifespan=lifespan,
                  summary=f"Risk from the model in force ({service.model.id}); every answer is logged first.")
    model = {"id": service.model.id, "sha256": service.model.sha256}
    scorer, log, metrics, features = service.model.scorer, service.log, service.metrics, service.requests.features

    @app.post("/v1/predict", openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": service.requests.json_schema()}}}})
    async def predict(request: Request) -> Response:
        """Risk for 1 to 10,000 records; 422 names the record and field of each problem."""
        started = time.perf_counter()
        try:
            records = service.requests.validate(await request.body())
        except pydantic.ValidationError as error:
            found = problems(error)
            metrics.answered(status=422, seconds=time.perf_counter() - started, records=0)
            return JSONResponse({"detail": found, "message": "; ".join(p["message"] for p in found[:5])}, status_code=422)
        scored = scorer.score(records)
        request_id = uuid.uuid4().hex
        risk = scored.risk.tolist()
        passed = {name: [_identifier(r.get(name)) for r in records] for name in PASS_THROUGH}
        line = encode_request(request_id=request_id, time_us=time.time_ns() // 1000, risk=risk,
                              inputs={name: [r[name] for r in records] for name in features},
                              unseen=scored.unseen, pass_through=passed)
        try:
            await asyncio.wrap_future(log.submit(line, records=len(records)))
        except LogUnavailable as error:
            metrics.answered(status=503, seconds=time.perf_counter() - started, records=0)
            return JSONResponse({"detail": str(error)}, status_code=503)
        predictions = [{"prediction_id": f"{request_id}-{i}", "risk": r} for i, r in enumerate(risk)]
        for name, values in passed.items():
            for prediction, value in zip(predictions, values):
                if value is not None:
                    prediction[name] = value
        metrics.answered(status=200, seconds=time.perf_counter() - started, records=len(records),
                         unseen=scored.unseen_counts())
        body = json.dumps({"request_id": request_id, "model": model, "predictions": predictions}, separators=(",", ":"))
        return Response(body, media_type=_JSON)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """The model in force, the ledger head verified at start, and the log's state (503 if it cannot write)."""
        stats = log.stats
        recovery = stats.recovery
        body: dict[str, Any] = {
            "status": "ok" if stats.last_error is None else "degraded",
            "model": {**model, "path": service.model.path, "ledger_seq": service.model.ledger_seq},
            "ledger": {"head": service.model.ledger_head, "size": service.model.ledger_size},
            "log": {"directory": str(log.directory), "records_logged": stats.records_logged,
                    "segments_sealed": stats.segments_sealed, "last_error": stats.last_error,
                    "last_seal_error": stats.last_seal_error,
                    "recovered": None if recovery is None else {
                        "segments": len(recovery.sealed), "records": recovery.records,
                        "torn_bytes": recovery.torn_bytes, "seconds": round(recovery.seconds, 3)}},
        }
        return JSONResponse(body, status_code=200 if stats.last_error is None else 503)

    @app.post("/v1/log/roll")
    async def roll() -> JSONResponse:
        """Close the open segment of the prediction log now and seal it in the ledger."""
        try:
            sealed = await asyncio.wrap_future(log.roll())
        except LogUnavailable as error:
            return JSONResponse({"detail": str(error)}, status_code=503)
        return JSONResponse({"sealed": [{"segment_id": s.segment_id, "path": s.path, "sha256": s.sha256,
                                         "count": s.count, "ledger_seq": s.ledger_seq} for s in sealed]})

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        """Prometheus text format: service health and the latest records' monitored metrics."""
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    return app


def _identifier(value: Any) -> str | None:
    return None if value is None else str(value)
