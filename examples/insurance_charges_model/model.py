"""InsuranceChargesModel: an ml_base MLModel that serves the trained regressor.

It knows nothing about caching or HTTP: rest-model-service serves it, and the CachedModel
decorator wraps it from configuration alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
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
        # a single-output forest is predicted tree by tree (see _predict), any other estimator as it is
        trees = getattr(self._regressor, "estimators_", None)
        self._trees = list(trees) if getattr(self._regressor, "n_outputs_", None) == 1 and trees else None
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
        charges = float(self._predict(features)[0])
        return InsuranceChargesModelOutput(charges=round(charges, 2))

    def _predict(self, features: np.ndarray) -> np.ndarray:
        """The forest's mean prediction, computed exactly as RandomForestRegressor.predict computes it with
        one job (features as float32, the trees' predictions summed in order into float64, divided by the
        number of trees: bit-identical, a unit test compares them), but without scikit-learn's joblib
        wrapper. That wrapper (sklearn.utils.parallel, used even at n_jobs=1) runs every tree inside
        warnings.catch_warnings() + warnings.resetwarnings(), which replace and clear the process-wide
        warnings.filters list: not thread-safe before Python 3.14. The service predicts in a threadpool;
        concurrent predictions interleave those saves and restores until the filter list stays empty for
        good, after which every tree call warns "`sklearn.utils.parallel.delayed` should be used with
        `sklearn.utils.parallel.Parallel`" and each filter change resets the once-per-location registry,
        so hundreds of lines are printed per prediction (and every other warnings filter is lost)."""
        if self._trees is None:
            return self._regressor.predict(features)
        rows = np.ascontiguousarray(features, dtype=np.float32)
        total = np.zeros(rows.shape[0], dtype=np.float64)
        for tree in self._trees:
            total += tree.predict(rows, check_input=False)
        total /= len(self._trees)
        return total
