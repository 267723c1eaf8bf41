"""IrisModel: an ml_base MLModel that serves the trained classifier.

Like the insurance example it knows nothing about caching or HTTP: rest-model-service serves it and
the CachedModel decorator wraps it from configuration alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
from ml_base import MLModel
from ml_base.ml_model import MLModelSchemaValidationException
from pydantic import ValidationError

from iris_model import __version__
from iris_model.schemas import FEATURE_NAMES, IrisModelInput, IrisModelOutput, Species

MODEL_FILES = Path(__file__).resolve().parent / "model_files"
SPECIES = tuple(Species)  # class label i -> species


class IrisModel(MLModel):
    """Predicts the species (setosa, versicolor or virginica) of one iris flower."""

    @property
    def display_name(self) -> str:
        return "Iris Model"

    @property
    def qualified_name(self) -> str:
        return "iris_model"

    @property
    def description(self) -> str:
        return "Predicts the species of an iris flower from its sepal and petal length and width."

    @property
    def version(self) -> str:
        return __version__

    @property
    def input_schema(self):
        return IrisModelInput

    @property
    def output_schema(self):
        return IrisModelOutput

    def __init__(self, model_files: str | None = None) -> None:
        """Load the artifact that `python -m iris_model.train` wrote (the image does it at build time)."""
        directory = Path(model_files) if model_files else MODEL_FILES
        artifact = directory / f"iris_model-{__version__}.joblib"
        if not artifact.is_file():
            raise FileNotFoundError(f"model artifact {artifact} not found: run `python -m iris_model.train` first")
        self._classifier = joblib.load(artifact)
        metadata_file = artifact.with_suffix(".json")
        self.metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}

    def predict(self, data: IrisModelInput) -> IrisModelOutput:
        """Validate (dicts are accepted too), predict, name the class."""
        if not isinstance(data, IrisModelInput):
            try:
                data = IrisModelInput.model_validate(data)
            except ValidationError as error:
                raise MLModelSchemaValidationException(str(error)) from error
        features = np.array([[getattr(data, name) for name in FEATURE_NAMES]], dtype=np.float64)
        label = int(self._classifier.predict(features)[0])
        return IrisModelOutput(species=SPECIES[label])
