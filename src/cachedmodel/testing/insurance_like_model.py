"""A small, deterministic MLModel shaped like the insurance-charges model, for tests and benchmarks.

It counts its predict() calls (thread-safe) and can be slowed down or made to fail on demand, so
tests can see exactly when the decorator called the model.
"""
from __future__ import annotations

import threading
import time
from enum import Enum

from ml_base import MLModel
from pydantic import BaseModel, Field, RootModel


class Sex(str, Enum):
    male = "male"
    female = "female"


class Region(str, Enum):
    southwest = "southwest"
    southeast = "southeast"
    northwest = "northwest"
    northeast = "northeast"


class InsuranceInput(BaseModel):
    age: int = Field(ge=18, le=65)
    sex: Sex
    bmi: float = Field(ge=15.0, le=50.0)
    children: int = Field(ge=0, le=5)
    smoker: bool
    region: Region


class InsuranceOutput(BaseModel):
    charges: float


class InsuranceLikeModel(MLModel):
    """charges = a formula of the inputs (not rounded, so float bit-exactness is really exercised)."""

    display_name = "Insurance-like test model"
    description = "Deterministic stand-in for the insurance charges model"
    input_schema = InsuranceInput
    output_schema = InsuranceOutput
    qualified_name = version = None  # MLModel's abstract names, set per instance

    def __init__(self, qualified_name: str = "insurance_like_model", version: str = "1.0.0",
                 delay_seconds: float = 0.0):
        self.qualified_name, self.version = qualified_name, version
        self.delay_seconds = delay_seconds
        self.fail_with: Exception | None = None
        self.gate: threading.Event | None = None  # set: predict() waits (at most 30 s) until it opens
        self.calls = 0
        self.seen: list[InsuranceInput] = []
        self._lock = threading.Lock()

    def predict(self, data: InsuranceInput) -> InsuranceOutput:
        with self._lock:
            self.calls += 1
            self.seen.append(data)
        if self.gate is not None and not self.gate.wait(30):
            raise TimeoutError("the test never opened the model's gate")
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if self.fail_with is not None:
            raise self.fail_with
        charges = (250.0 * data.age + 321.7 * data.bmi / 3.0 + 475.5 * data.children
                   + (23848.5 if data.smoker else 0.0) + (1.1 if data.sex is Sex.male else 0.0)
                   + {"southwest": 0.0, "southeast": -35.7, "northwest": -1.3, "northeast": 12.9}[data.region.value])
        return InsuranceOutput(charges=charges)


def sample_input(**overrides) -> InsuranceInput:
    values = dict(age=42, sex="female", bmi=27.123456789, children=2, smoker=False, region="northwest")
    values.update(overrides)
    return InsuranceInput(**values)


Batch = RootModel[list[InsuranceInput]]
Charges = RootModel[list[InsuranceOutput]]


class BatchInsuranceLikeModel(MLModel):
    """The same formula over a list of rows (a batch model, cached row by row); records the rows of
    every call, and can be slowed down or made to answer too few rows (a broken batch model)."""

    display_name = description = "Insurance-like batch test model"
    input_schema, output_schema = Batch, Charges
    qualified_name = version = None  # MLModel's abstract names, set per instance

    def __init__(self, qualified_name: str = "insurance_like_batch_model", version: str = "1.0.0",
                 delay_seconds: float = 0.0, answer_rows: int | None = None):
        self.qualified_name, self.version = qualified_name, version
        self.single = InsuranceLikeModel(qualified_name=qualified_name, version=version)
        self.calls: list[list[InsuranceInput]] = []
        self.delay_seconds = delay_seconds
        self.answer_rows = answer_rows
        self._lock = threading.Lock()

    @property
    def rows_seen(self) -> int:
        return sum(map(len, self.calls))

    def predict(self, data: Batch) -> Charges:
        with self._lock:
            self.calls.append(list(data.root))
        if self.delay_seconds:
            time.sleep(self.delay_seconds)  # a slow model, as InsuranceLikeModel's
        rows = data.root if self.answer_rows is None else data.root[:self.answer_rows]
        return Charges([self.single.predict(row) for row in rows])
