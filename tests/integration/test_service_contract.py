"""The service keeps its OpenAPI contract (issue 15): schemathesis, run against the real service (real
uvicorn process, real redis-server, the real example model) with every check, finds nothing — with
Redis up (misses, then fast-path hits) and with Redis stopped (every answer from the model).

schemathesis's CLI (`st run`) with a fixed seed and a bounded number of examples per operation, in a
temporary directory (no example database, no report files left behind); warnings (e.g. an operation
that only ever answered 404) fail the run too. Plus what the fuzzer may not hit by chance: the
documented responses themselves, and one request per undocumented-before answer.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cachedmodel.testing.model_service import MODEL_FILES_HINT, ModelService, artifact_missing
from cachedmodel.testing.redis_server import RedisServer

pytestmark = pytest.mark.integration

SEED = 15
MAX_EXAMPLES = 100           # per operation and phase: a few hundred requests, ~10 s a run
PREDICTION = "/api/models/insurance_charges_model/prediction"
METADATA = "/api/models/{model_qualified_name}/metadata"
BODY = {"age": 42, "sex": "female", "bmi": 27.5, "children": 2, "smoker": False, "region": "northwest"}
ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def store():
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def service(store):
    svc = ModelService(env={"REDIS_URL": store.url})
    try:
        svc.start()
        yield svc
    except BaseException:
        print(svc.logs())
        raise
    finally:
        svc.cleanup()


def schemathesis(url: str, workdir: Path) -> subprocess.CompletedProcess:
    config = workdir / "schemathesis.toml"
    config.write_text("[warnings]\nfail-on = true\n")
    command = [str(ST), "--no-color", "--config-file", str(config), "run", f"{url}/openapi.json",
               "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
               "--request-timeout", "10", "--generation-database", "none", "--suppress-health-check", "too_slow"]  # a loaded CI machine is slow, not the API
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SCHEMATHESIS_")}
    return subprocess.run(command, cwd=workdir, env={**environment, "NO_COLOR": "1"}, capture_output=True,
                          text=True, timeout=240)


def assert_no_findings(run: subprocess.CompletedProcess) -> None:
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20000:]
    assert "No issues found" in report, report[-20000:]
    assert " 0 generated" not in report, report[-20000:]


def test_schemathesis_finds_nothing_with_redis_up(service, tmp_path):
    with httpx.Client(base_url=service.url, timeout=10.0) as http:  # a cached entry, so hits are fuzzed too
        assert http.post(PREDICTION, json=BODY).status_code == 200
        assert http.post(PREDICTION, json=BODY).headers["x-cache"] == "hit"
    assert_no_findings(schemathesis(service.url, tmp_path))


@pytest.fixture(scope="module")
def spec(service) -> dict:
    return httpx.get(f"{service.url}/openapi.json", timeout=10.0).json()


def schema_of(response: dict) -> dict:
    return response["content"]["application/json"]["schema"]


def test_every_route_documents_its_error_answers_in_the_error_schema(spec):
    error = {"$ref": "#/components/schemas/Error"}
    assert spec["components"]["schemas"]["Error"]["required"] == ["type", "messages"]
    assert "/" not in spec["paths"]  # the browser redirect to /docs, not part of the API (like /docs)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)  # validation errors are 400
            for status in ("408", "413", "500"):
                assert schema_of(responses[status]) == error, (method, path, status)
    prediction = spec["paths"][PREDICTION]["post"]["responses"]
    for status in ("400", "415", "500", "503"):
        assert schema_of(prediction[status]) == error, status
    assert prediction["200"]["headers"]["x-cache"]["schema"] == {"type": "string", "enum": ["hit", "miss"]}
    assert schema_of(prediction["200"]) == {"$ref": "#/components/schemas/InsuranceChargesModelOutput"}
    body = spec["paths"][PREDICTION]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/InsuranceChargesModelInput"}  # the model's schemas
    metadata = spec["paths"][METADATA]["get"]
    for status in ("404", "503"):
        assert schema_of(metadata["responses"][status]) == error, status
    assert metadata["parameters"][0]["schema"]["examples"] == ["insurance_charges_model"]
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])


@pytest.mark.parametrize("content, headers, status, error_type", [
    (b"\xff\xfe{}", {"content-type": "application/json"}, 400, "MalformedJSON"),  # not UTF-8
    (b"\xff\xfe{}", {"content-type": "text/plain"}, 415, "UnsupportedMediaType"),
    (b"", {}, 415, "UnsupportedMediaType"),
    (b'{"age": ', {"content-type": "application/json"}, 400, "MalformedJSON"),
])
def test_answers_schemathesis_found_undocumented_are_documented_and_in_the_error_schema(
        service, spec, content, headers, status, error_type):
    answer = httpx.post(f"{service.url}{PREDICTION}", content=content, headers=headers, timeout=10.0)
    assert answer.status_code == status, answer.text
    assert str(status) in spec["paths"][PREDICTION]["post"]["responses"]
    assert answer.headers["content-type"] == "application/json"
    payload = answer.json()
    assert set(payload) == {"type", "messages"} and payload["type"] == error_type, payload
    assert all(isinstance(message, str) for message in payload["messages"])


def test_a_whole_float_for_an_integer_field_is_read_as_that_integer(service):
    """JSON Schema 2020-12 (OpenAPI 3.1): 42.0 is an integer. Same prediction (and cache entry) as 42,
    on a miss and on a hit; 42.5, true and "42" are still refused."""
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        exact = http.post(PREDICTION, json={**BODY, "children": 3})
        assert exact.status_code == 200, exact.text
        spelled = http.post(PREDICTION, json={**BODY, "age": 42.0, "children": 3.0})
        assert spelled.status_code == 200, spelled.text
        assert spelled.content == exact.content and spelled.headers["x-cache"] == "hit"
        fresh = http.post(PREDICTION, json={**BODY, "age": 43.0})
        assert fresh.status_code == 200 and fresh.headers["x-cache"] == "miss", fresh.text
        assert http.post(PREDICTION, json={**BODY, "age": 43}).content == fresh.content
        for wrong in (42.5, True, "42", 66.0):
            refused = http.post(PREDICTION, json={**BODY, "age": wrong})
            assert refused.status_code == 400 and refused.json()["type"] == "ValidationError", (wrong, refused.text)
            assert "'age'" in refused.json()["messages"][0]


def test_schemathesis_finds_nothing_with_redis_stopped(service, store, tmp_path):
    store.kill()  # last in this module: the tests above need Redis
    try:
        with httpx.Client(base_url=service.url, timeout=10.0) as http:
            answer = http.post(PREDICTION, json=BODY)
            assert answer.status_code == 200 and answer.headers.get("x-cache") != "hit", answer.text
        assert_no_findings(schemathesis(service.url, tmp_path))
    finally:
        store.start()
