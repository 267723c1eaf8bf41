"""InsuranceChargesModel: an ml_base MLModel that serves the trained regressor.

It knows nothing about caching or HTTP: rest-model-service serves it, and the CachedModel
decorator wraps it from configuration alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import joblib
from ml_base import MLModel
from ml_base.ml_model import MLModelSchemaValidationException
from pydantic import ValidationError

from insurance_charges_model import __version__
from insurance_charges_model.features import encode
from insurance_charges_model.schemas import InsuranceChargesModelInput, InsuranceChargesModelOutput

MODEL_FILES = Path(__file__).resolve().parent / "model_files"


class InsuranceChargesModel(MLModel):
    """Predicts yearly medical insurance charges (USD, 2 decimals) for one person."""

    @property
    def display_name(self) -> str:
        return "Insurance Charges Model"

    @property
    def qualified_name(self) -> str:
        return "insurance_charges_model"

    @property
    def description(self) -> str:
        return "Predicts yearly medical insurance charges from age, sex, BMI, children, smoking and region."

    @property
    def version(self) -> str:
        return __version__

    @property
    def input_schema(self):
        return InsuranceChargesModelInput

    @property
    def output_schema(self):
        return InsuranceChargesModelOutput

    def __init__(self, model_files: str | None = None) -> None:
        """Load the artifact built by `make model` (or `python -m insurance_charges_model.train`)."""
        directory = Path(model_files) if model_files else MODEL_FILES
        artifact = directory / f"insurance_charges_model-{__version__}.joblib"
        if not artifact.is_file():
            raise FileNotFoundError(f"model artifact {artifact} not found: run `make model` "
                                    f"(python -m insurance_charges_model.train) first")
        self._regressor = joblib.load(artifact)
        metadata_file = artifact.with_suffix(".json")
        self.metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}

    def predict(self, data: InsuranceChargesModelInput) -> InsuranceChargesModelOutput:
        """Validate (dicts are accepted too), encode, predict, round to cents."""
        if not isinstance(data, InsuranceChargesModelInput):
            try:
                data = InsuranceChargesModelInput.model_validate(data)
            except ValidationError as error:
                raise MLModelSchemaValidationException(str(error)) from error
        features = encode([data.model_dump()])
        charges = float(self._regressor.predict(features)[0])
        return InsuranceChargesModelOutput(charges=round(charges, 2))
