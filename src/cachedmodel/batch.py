"""Per-row caching of batch inputs.

A model whose input schema is `RootModel[list[Row]]` and whose output schema is
`RootModel[list[OutRow]]` (the same length, in the same order) is cached row by row:

  rows -> row keys -> local tier -> one MGET for the rest (one pipeline per hash slot in Cluster mode)
  -> the model once, with only the rows that missed, in their original order -> results stitched back
  in input order -> the new rows stored in one pipeline.

A row's key equals the key the same record gets as the single input of a model with the row schemas
and the batch model's name and version: the row view is a RedisCachingDecorator of such a model, and it
shares the batch decorator's backend, breaker, local tier, single-flight and codec. Every option works
per row (hashing_fields and reduced_precision_fields name Row fields), and the metrics count rows:
each row is one request that ends as a hit, a miss or a bypass. Concurrent batches share rows in
flight: a batch leads the rows nobody computes, computes them, and only then waits for the rows other
batches lead (leaders never wait, so no deadlock).
"""
from __future__ import annotations

import typing
from typing import Any

from ml_base.ml_model import MLModel
from pydantic import BaseModel, RootModel


def row_types(input_type: type, output_type: type) -> tuple[type, type] | None:
    """(Row, OutRow) when both schemas are RootModel lists of (non-root) models, else None."""
    rows = []
    for schema in (input_type, output_type):
        if not (isinstance(schema, type) and issubclass(schema, RootModel)):
            return None
        annotation = schema.model_fields["root"].annotation
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is not list or len(args) != 1:
            return None
        row = args[0]
        if not (isinstance(row, type) and issubclass(row, BaseModel)) or issubclass(row, RootModel):
            return None
        rows.append(row)
    return rows[0], rows[1]


class RowModel(MLModel):
    """The single-row model a batch model's rows are keyed as (never predicts: the batch model does)."""

    display_name = "row view"
    description = "row view of a batch model"
    qualified_name = version = input_schema = output_schema = None  # MLModel's abstract names, set per view

    def __init__(self, qualified_name: str, version: str, input_schema: type, output_schema: type):
        self.qualified_name, self.version = qualified_name, version
        self.input_schema, self.output_schema = input_schema, output_schema

    def predict(self, data: Any) -> Any:
        raise RuntimeError("a row view never predicts; the batch model does")
