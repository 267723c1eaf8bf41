"""A model whose input validator has a bug (raises TypeError, which pydantic does not turn into a
validation error), for the service hardening tests: such a failure must still be a 500 in the error
shape, never a plain-text crash."""
from __future__ import annotations

from ml_base import MLModel
from pydantic import BaseModel, field_validator


class BuggyInput(BaseModel):
    value: int

    @field_validator("value")
    @classmethod
    def _buggy(cls, value: int) -> int:
        if value == 13:
            raise TypeError("unlucky validator bug")
        return value


class BuggyOutput(BaseModel):
    doubled: int


class BuggyValidatorModel(MLModel):
    display_name = "buggy validator model"
    qualified_name = "buggy_validator_model"
    description = "its input schema raises TypeError for value 13"
    version = "0.0.1"
    input_schema = BuggyInput
    output_schema = BuggyOutput

    def __init__(self) -> None:
        pass

    def predict(self, data: BuggyInput) -> BuggyOutput:
        return BuggyOutput(doubled=2 * data.value)
