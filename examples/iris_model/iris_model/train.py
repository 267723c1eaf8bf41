"""Train the iris classifier and save a versioned artifact plus a metadata file.

`python -m iris_model.train` writes model_files/iris_model-<version>.joblib and .json (accuracy, a
digest of the data, library versions). The data is the iris data set that scikit-learn ships inside
its wheel (`sklearn.datasets.load_iris`): nothing is downloaded. Training is reproducible: a fixed
seed for the split and the forest, one job, so every run gives the same classifier.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from iris_model import __version__
from iris_model.schemas import FEATURE_NAMES, Species

SEED = 42
TEST_SIZE = 0.3
MODEL_FILES = Path(__file__).resolve().parent / "model_files"
ARTIFACT_STEM = f"iris_model-{__version__}"


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray  # (150, 4) in FEATURE_NAMES order, cm
    labels: np.ndarray  # (150,) class index into Species
    sha256: str  # of the features and labels as scikit-learn ships them


def load_dataset() -> Dataset:
    """The 150 flowers scikit-learn ships, checked against the schema's field and class order."""
    iris = load_iris()
    columns = tuple(name.removesuffix(" (cm)").replace(" ", "_") for name in iris.feature_names)
    if columns != FEATURE_NAMES or tuple(iris.target_names) != tuple(s.value for s in Species):
        raise ValueError(f"load_iris() has columns {columns} and classes {tuple(iris.target_names)}: "
                         f"the schema expects {FEATURE_NAMES} and {tuple(s.value for s in Species)}")
    features = np.ascontiguousarray(iris.data, dtype=np.float64)
    labels = np.ascontiguousarray(iris.target, dtype=np.int64)
    digest = hashlib.sha256(features.tobytes() + labels.tobytes()).hexdigest()
    return Dataset(features, labels, digest)


def build_classifier() -> RandomForestClassifier:
    """100 trees, fixed seed, one job: the same forest on every run."""
    return RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)


def train(dataset: Dataset) -> tuple[RandomForestClassifier, dict]:
    """Fit on a stratified 70 % split, score on the rest; returns the classifier and its metrics."""
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.features, dataset.labels, test_size=TEST_SIZE, stratify=dataset.labels, random_state=SEED)
    classifier = build_classifier().fit(x_train, y_train)
    metrics = {"test_accuracy": round(float(accuracy_score(y_test, classifier.predict(x_test))), 4),
               "train_rows": len(y_train), "test_rows": len(y_test)}
    return classifier, metrics


def metadata(metrics: dict, dataset: Dataset) -> dict:
    return {"model": "iris_model", "version": __version__, "estimator": "RandomForestClassifier",
            "seed": SEED, "features": list(FEATURE_NAMES), "classes": [s.value for s in Species],
            "metrics": metrics,
            "data": {"source": f"sklearn.datasets.load_iris (scikit-learn {sklearn.__version__})",
                     "sha256": dataset.sha256},
            "versions": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                         "numpy": np.__version__, "joblib": joblib.__version__}}


def save(classifier, meta: dict, directory: Path = MODEL_FILES) -> Path:
    """Write <stem>.joblib and <stem>.json; returns the artifact path."""
    directory.mkdir(parents=True, exist_ok=True)
    artifact = directory / f"{ARTIFACT_STEM}.joblib"
    joblib.dump(classifier, artifact, compress=3)
    (directory / f"{ARTIFACT_STEM}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return artifact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=MODEL_FILES, help="where to write the artifact")
    args = parser.parse_args(argv)
    started = time.monotonic()
    dataset = load_dataset()
    classifier, metrics = train(dataset)
    artifact = save(classifier, metadata(metrics, dataset), args.output_dir)
    print(f"trained {ARTIFACT_STEM} in {time.monotonic() - started:.1f}s: test accuracy "
          f"{metrics['test_accuracy']:.4f} ({metrics['train_rows']} train / {metrics['test_rows']} test rows) "
          f"-> {artifact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
