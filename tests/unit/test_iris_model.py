"""The second example model (examples/iris_model/, its own project): schema ranges and strictness,
reproducible training on the data scikit-learn ships (no download), predictions, and the caching
decorator taking the model as it is. The artifact is trained here into a temp dir (the image trains
its own at build time; none is committed).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ml_base.ml_model import MLModelSchemaValidationException
from pydantic import ValidationError

from iris_model import __version__, train
from iris_model.model import IrisModel
from iris_model.schemas import FEATURE_NAMES, IrisModelInput, IrisModelOutput, Species
from tests.support.metrics import registry_metric as metric

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "examples" / "iris_model"

VALID = {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 4.1, "petal_width": 1.0}
# one typical flower of each species (rows 0, 50 and 100 of the data set)
TYPICAL = {
    "setosa": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    "versicolor": {"sepal_length": 7.0, "sepal_width": 3.2, "petal_length": 4.7, "petal_width": 1.4},
    "virginica": {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},
}


@pytest.fixture(scope="module")
def dataset():
    return train.load_dataset()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, dataset) -> Path:
    """An artifact trained as `python -m iris_model.train` does, in a temp dir."""
    directory = tmp_path_factory.mktemp("iris-model-files")
    assert train.main(["--output-dir", str(directory)]) == 0
    return directory


# ---------------------------------------------------------------- schema
def test_valid_input_is_accepted_and_integers_count_as_floats():
    assert IrisModelInput(**VALID).petal_width == 1.0
    record = IrisModelInput(**{**VALID, "sepal_length": 6, "sepal_width": 3})
    assert record.sepal_length == 6.0 and type(record.sepal_length) is float
    assert FEATURE_NAMES == ("sepal_length", "sepal_width", "petal_length", "petal_width")


@pytest.mark.parametrize("field, value", [
    ("sepal_length", 3.9), ("sepal_length", 8.6), ("sepal_width", 1.4), ("sepal_width", 5.1),
    ("petal_length", 0.4), ("petal_length", 7.6), ("petal_width", 0.0), ("petal_width", 3.1),
    ("petal_width", -1.0), ("sepal_length", float("nan")), ("sepal_width", float("inf")),
    ("petal_length", "4.1"), ("petal_width", True), ("sepal_length", None), ("sepal_width", [3.0]),
])
def test_out_of_range_or_wrong_type_names_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        IrisModelInput(**{**VALID, field: value})
    assert [error["loc"][0] for error in info.value.errors()] == [field]


@pytest.mark.parametrize("field, value", [("sepal_length", 4.0), ("sepal_length", 8.5), ("sepal_width", 1.5),
                                          ("sepal_width", 5.0), ("petal_length", 0.5), ("petal_length", 7.5),
                                          ("petal_width", 0.05), ("petal_width", 3.0)])
def test_bounds_are_inclusive(field, value):
    assert getattr(IrisModelInput(**{**VALID, field: value}), field) == value


def test_missing_and_unknown_fields_are_named():
    with pytest.raises(ValidationError) as info:
        IrisModelInput(**{k: v for k, v in VALID.items() if k != "petal_width"})
    assert [error["loc"] for error in info.value.errors()] == [("petal_width",)]
    with pytest.raises(ValidationError) as info:
        IrisModelInput(**VALID, petal_colour="blue")
    assert [error["loc"] for error in info.value.errors()] == [("petal_colour",)]


def test_json_schema_publishes_ranges_and_the_species():
    schema = IrisModelInput.model_json_schema()
    assert schema["properties"]["sepal_length"]["minimum"] == 4.0
    assert schema["properties"]["sepal_length"]["maximum"] == 8.5
    assert set(schema["required"]) == set(FEATURE_NAMES) and schema["additionalProperties"] is False
    output = IrisModelOutput.model_json_schema()
    assert output["$defs"]["Species"]["enum"] == ["setosa", "versicolor", "virginica"]
    with pytest.raises(ValidationError):
        IrisModelOutput(species="rose")


# ---------------------------------------------------------------- data + training
def test_dataset_is_the_iris_data_scikit_learn_ships(dataset):
    assert dataset.features.shape == (150, 4) and dataset.labels.shape == (150,)
    assert np.bincount(dataset.labels).tolist() == [50, 50, 50]
    assert dataset.features[0].tolist() == list(TYPICAL["setosa"].values()) and dataset.labels[0] == 0
    assert dataset.features[100].tolist() == list(TYPICAL["virginica"].values()) and dataset.labels[100] == 2
    assert train.load_dataset().sha256 == dataset.sha256 and len(dataset.sha256) == 64


def test_training_is_reproducible_and_good(dataset):
    first, metrics = train.train(dataset)
    second, metrics_again = train.train(dataset)
    np.testing.assert_array_equal(first.predict(dataset.features), second.predict(dataset.features))
    np.testing.assert_array_equal(first.predict_proba(dataset.features), second.predict_proba(dataset.features))
    assert metrics == metrics_again
    assert (metrics["train_rows"], metrics["test_rows"]) == (105, 45)
    assert metrics["test_accuracy"] > 0.85  # measured: 0.8889 on the held-out 45 (a hard split for seed 42)
    assert (first.predict(dataset.features) == dataset.labels).mean() > 0.95


def test_saved_artifact_and_metadata(model_files, dataset):
    artifact = model_files / f"iris_model-{__version__}.joblib"
    assert artifact.is_file()
    meta = json.loads(artifact.with_suffix(".json").read_text())
    _, metrics = train.train(dataset)
    assert meta["metrics"] == metrics and meta["seed"] == train.SEED == 42
    assert meta["features"] == list(FEATURE_NAMES) and meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["data"]["sha256"] == dataset.sha256 and "load_iris" in meta["data"]["source"]
    assert IrisModel(model_files=str(model_files)).metadata == meta


# ---------------------------------------------------------------- model
def test_model_metadata_and_predictions(model_files):
    model = IrisModel(model_files=str(model_files))
    assert model.qualified_name == "iris_model" and model.version == __version__ == "0.1.0"
    assert model.display_name == "Iris Model" and model.description
    assert model.input_schema is IrisModelInput and model.output_schema is IrisModelOutput
    for species, flower in TYPICAL.items():
        output = model.predict(IrisModelInput(**flower))
        assert isinstance(output, IrisModelOutput) and output.species is Species(species)
        assert model.predict(flower) == output  # a plain dict gives the same answer
    assert output.model_dump(mode="json") == {"species": "virginica"}
    first = model.predict(VALID)
    assert all(IrisModel(model_files=str(model_files)).predict(VALID) == first for _ in range(3))


def test_invalid_dict_input_raises_schema_validation_exception_naming_the_field(model_files):
    with pytest.raises(MLModelSchemaValidationException, match="petal_length"):
        IrisModel(model_files=str(model_files)).predict({**VALID, "petal_length": 12.0})


def test_missing_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="iris_model.train"):
        IrisModel(model_files=str(tmp_path))


# ---------------------------------------------------------------- served with the cache
def test_the_caching_decorator_takes_the_model_as_it_is(model_files):
    """No Redis here (a socket that does not exist): the in-process tier shows that an output, species
    enum included, is stored and comes back unchanged, and that reduced precision accepts the floats."""
    from cachedmodel import RedisCachingDecorator

    decorator = RedisCachingDecorator(IrisModel(model_files=str(model_files)), url="unix:///nonexistent-dir/redis.sock",
                                      prefix="iris", local_cache_size=16, reduced_precision_fields=list(FEATURE_NAMES),
                                      number_of_places=1)
    before = {name: metric(name, model="iris_model") for name in ("cachedmodel_model_seconds_count",)}
    before["local hits"] = metric("cachedmodel_cache_hits_total", model="iris_model", tier="local")
    before["encode errors"] = metric("cachedmodel_cache_errors_total", model="iris_model", kind="encode")
    flower = TYPICAL["versicolor"]
    first = decorator.predict(flower)
    again = decorator.predict({**flower, "petal_width": 1.42})  # the same to one decimal
    assert first == again and first.species is Species.versicolor
    assert decorator.cache_key(flower).startswith("iris:")
    assert metric("cachedmodel_model_seconds_count", model="iris_model") - before["cachedmodel_model_seconds_count"] == 1
    assert metric("cachedmodel_cache_hits_total", model="iris_model", tier="local") - before["local hits"] == 1
    assert metric("cachedmodel_cache_errors_total", model="iris_model", kind="encode") == before["encode errors"]


def test_the_images_default_config_serves_this_model():
    config = yaml.safe_load((PROJECT / "rest_config.yaml").read_text())
    (entry,) = config["models"]
    module, _, name = entry["class_path"].rpartition(".")
    assert (module, name) == ("iris_model.model", "IrisModel") and entry["create_endpoint"] is True
    assert [d["class_path"] for d in entry["decorators"]] == ["cachedmodel.RedisCachingDecorator"]
    assert entry["decorators"][0]["configuration"]["url"].startswith("${REDIS_URL")
