"""Small ml_base models for service tests that need a model to misbehave on purpose (real classes,
loaded by the real service from a config's class_path)."""
from __future__ import annotations

from pathlib import Path

from cachedmodel.testing.processes import wait_until
from ml_base import MLModel
from ml_base.decorator import MLModelDecorator
from pydantic import BaseModel, Field, RootModel


class EchoInput(BaseModel):
    value: int = Field(ge=0, le=1000)


class EchoOutput(BaseModel):
    doubled: int


class _Base(MLModel):
    display_name = "test model"
    description = "a model for service tests"
    version = "0.0.1"
    input_schema = EchoInput
    output_schema = EchoOutput

    def predict(self, data: EchoInput) -> EchoOutput:
        return EchoOutput(doubled=2 * data.value)


class GatedModel(_Base):
    """Loading blocks until the file `gate` exists (bounded by `timeout`), so tests can watch the
    probes while models are still loading, without timing guesses."""

    qualified_name = "gated_model"

    def __init__(self, gate: str, timeout: float = 60.0) -> None:
        wait_until(Path(gate).exists, timeout, interval=0.05, what=f"gate file {gate}")


class FailingModel(_Base):
    """Predicts for value < 500 and raises for the rest: a model error the service must report as a 5xx."""

    qualified_name = "failing_model"

    def __init__(self) -> None:
        pass

    def predict(self, data: EchoInput) -> EchoOutput:
        if data.value >= 500:
            raise RuntimeError(f"cannot handle value {data.value}")
        return super().predict(data)


class OffsetDecorator(MLModelDecorator):
    """Adds `offset` to the wrapped model's `doubled`: listed after the caching decorator it is the
    outermost one, and a cache hit must still pass through it."""

    def predict(self, data: EchoInput) -> EchoOutput:
        output = self.__dict__["_model"].predict(data)
        return EchoOutput(doubled=output.doubled + self.__dict__["_configuration"].get("offset", 1))


class BatchEchoModel(_Base):
    """A batch model (RootModel list in, RootModel list out): the decorator caches it row by row."""

    qualified_name = "batch_echo_model"
    input_schema = RootModel[list[EchoInput]]
    output_schema = RootModel[list[EchoOutput]]

    def __init__(self):
        pass

    def predict(self, data):
        return RootModel[list[EchoOutput]]([EchoOutput(doubled=2 * row.value) for row in data.root])
