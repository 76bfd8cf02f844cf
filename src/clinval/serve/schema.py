"""Request models generated from the study schema (``params/study.yaml``).

A request is ``{"records": [{feature: value, ...}, ...]}`` with 1 to
:data:`MAX_RECORDS` records. Every feature of the study is required in every record;
``null`` means missing and is scored as the locked preprocessing scores a missing value
(median for a number, the ``missing`` category for a category). Numeric features take
JSON numbers only (finite; no strings, no booleans); categorical features take strings.
``record_id`` and ``patient_id`` are optional pass-through identifiers (string or
integer) for joining outcomes later. A ``never_features`` column (one that leaks the
outcome) is refused by name, as is any other unknown field.

Validation runs in pydantic-core straight from the request bytes; each problem names
the record index and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic
from pydantic import ConfigDict, Field, StrictInt, StrictStr, TypeAdapter
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict

from clinval import layout
from clinval.data import Schema
from clinval.errors import InputError
from clinval.predlog import PASS_THROUGH

__all__ = ["MAX_RECORDS", "RequestSchema", "request_schema"]

MAX_RECORDS = 10_000
"""Records one request may carry."""

MSG_NEVER = "{field} is listed under never_features in {study} (it must never be a model input); do not send it"
MSG_PASS_THROUGH_CLASH = "feature(s) {names} clash with the pass-through fields {fields}; rename them in the study"

_Number = Annotated[float, pydantic.Strict(), pydantic.AllowInfNan(False)]
_Category = StrictStr
_Identifier = StrictStr | StrictInt


@dataclass(frozen=True)
class RequestSchema:
    """The validator of ``POST /v1/predict`` bodies and its JSON schema.

    Attributes
    ----------
    adapter : pydantic.TypeAdapter
        ``adapter.validate_json(body)`` returns ``{"records": [dict, ...]}``.
    features : tuple of str
        The study's features, numeric first.
    """

    adapter: TypeAdapter
    features: tuple[str, ...]

    def json_schema(self) -> dict[str, Any]:
        """The request body's JSON schema (shown in the OpenAPI document)."""
        return self.adapter.json_schema()

    def validate(self, body: bytes) -> list[dict[str, Any]]:
        """The records of a request body.

        Raises
        ------
        pydantic.ValidationError
            With one error per problem; see :func:`problems`.
        """
        return self.adapter.validate_json(body)["records"]


def request_schema(schema: Schema, *, never_features: Sequence[str] = (), study_path: str = layout.STUDY) -> RequestSchema:
    """Generate the request model of a study."""
    clash = sorted(set(PASS_THROUGH) & set(schema.features))
    if clash:
        raise InputError(MSG_PASS_THROUGH_CLASH.format(names=clash, fields=list(PASS_THROUGH)))
    fields: dict[str, Any] = {}
    for name in schema.numeric:
        fields[name] = Annotated[_Number | None, Field(description=f"numeric feature {name}; null if missing")]
    for name in schema.categorical:
        fields[name] = Annotated[_Category | None, Field(description=f"categorical feature {name}; null if missing")]
    for name in PASS_THROUGH:
        fields[name] = NotRequired[Annotated[_Identifier | None, Field(description=f"optional {name}, passed through to the log")]]
    for name in never_features:
        if name not in fields:
            fields[name] = NotRequired[Annotated[Any, pydantic.AfterValidator(_refuse(name, study_path)),
                                                 Field(description=f"refused: {name} is a never_feature")]]
    record = TypedDict("PredictionRecord", fields)  # type: ignore[misc]  # names come from the study
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    body = TypedDict("PredictRequest", {"records": Annotated[list[record], Field(min_length=1, max_length=MAX_RECORDS)]})  # type: ignore[misc,valid-type]
    body.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return RequestSchema(adapter=TypeAdapter(body), features=schema.features)


def _refuse(name: str, study_path: str):
    def refuse(value: Any) -> Any:
        raise PydanticCustomError("never_feature", MSG_NEVER.format(field=name, study=study_path))

    return refuse


def problems(error: pydantic.ValidationError) -> list[dict[str, Any]]:
    """One entry per problem: ``record`` (index or None), ``field``, ``message``, ``loc``."""
    out = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = list(item["loc"])
        record = loc[1] if len(loc) >= 2 and loc[0] == "records" and isinstance(loc[1], int) else None
        field = str(loc[2]) if record is not None and len(loc) >= 3 else (str(loc[0]) if loc and record is None else None)
        where = f"record {record}, field {field!r}" if record is not None and field else (f"field {field!r}" if field else "body")
        out.append({"loc": ["body", *loc], "record": record, "field": field, "message": f"{where}: {item['msg']}"})
    return out
