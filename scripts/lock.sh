#!/usr/bin/env bash
# Re-resolve every Python lock file (`make lock`): requirements/dev.lock from requirements/dev.in,
# then the images' and the demo's locks as subsets of it (constrained by dev.lock, so an image installs exactly the
# versions and files the tests ran). UPGRADE=1 lets uv move every pin to the newest allowed version.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
common=(--generate-hashes --python-version 3.11 --no-header --quiet)
if [[ "${UPGRADE:-0}" == 1 ]]; then common+=(--upgrade); fi

"$UV" pip compile "${common[@]}" requirements/dev.in -o requirements/dev.lock
# The model runtime (no model): cachedmodel[service] alone; every model image is FROM it.
"$UV" pip compile "${common[@]}" -c requirements/dev.lock --extra service \
    pyproject.toml requirements/build.in -o requirements/model-runtime.lock
# A model image's lock: the runtime's closure plus its model's (the runtime's part is already installed,
# pip skips it); both constrained by dev.lock, so the shared pins are the runtime's.
"$UV" pip compile "${common[@]}" -c requirements/dev.lock --extra service \
    pyproject.toml examples/pyproject.toml requirements/build.in -o requirements/model-service.lock
"$UV" pip compile "${common[@]}" -c requirements/dev.lock \
    examples/iris_model/pyproject.toml requirements/build.in -o requirements/iris-model.lock
"$UV" pip compile "${common[@]}" -c requirements/dev.lock --extra service \
    pyproject.toml examples/pyproject.toml requirements/demo.in -o requirements/demo.lock
"$UV" pip compile "${common[@]}" -c requirements/dev.lock \
    operator/pyproject.toml requirements/build.in -o requirements/operator.lock
echo "locked: $(grep -c '^[a-z]' requirements/dev.lock) packages in dev.lock," \
     "$(grep -c '^[a-z]' requirements/model-runtime.lock) in model-runtime.lock," \
     "$(grep -c '^[a-z]' requirements/model-service.lock) in model-service.lock," \
     "$(grep -c '^[a-z]' requirements/iris-model.lock) in iris-model.lock," \
     "$(grep -c '^[a-z]' requirements/operator.lock) in operator.lock," \
     "$(grep -c '^[a-z]' requirements/demo.lock) in demo.lock"
