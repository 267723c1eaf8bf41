"""The model service as a real local process (uvicorn) on a free loopback port, for tests, the demo and benchmarks.

`ModelService(config=..., env={...}).start()` runs `python -m cachedmodel.service` (the image's
command) by default, or any `command`; waits for /api/health/ready with a deadline; `stop()`
terminates it (SIGTERM, then SIGKILL). Output goes to a temp log file that `logs()` returns, so a
failing test can show what the service said.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cachedmodel.testing.redis_server import free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
EXAMPLE_CONFIG = REPO / "examples" / "rest_config.yaml"
MODEL_NAME = "insurance_charges_model"


def http_status(url: str, timeout: float = 2.0) -> int:
    """GET url and return the status code (no exception for 4xx/5xx)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _new_log_file() -> str:
    descriptor, path = tempfile.mkstemp(prefix="cachedmodel-service-", suffix=".log")
    os.close(descriptor)
    return path


@dataclass
class ModelService:
    config: Path | str = EXAMPLE_CONFIG
    env: dict = field(default_factory=dict)
    command: list[str] | None = None          # default: python -m cachedmodel.service (PORT/HOST from env)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_file: str = field(default_factory=lambda: _new_log_file())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prediction_url(self, model: str = MODEL_NAME) -> str:
        return f"{self.url}/api/models/{model}/prediction"

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> "ModelService":
        environment = {**os.environ, "REST_CONFIG": str(self.config), "PORT": str(self.port), "HOST": "127.0.0.1",
                       "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in self.env.items()}}
        command = self.command or [sys.executable, "-m", "cachedmodel.service"]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(command, env=environment, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_until(lambda: self.process.poll() is not None or http_status(f"{self.url}/api/health", 1.0) > 0,
                   timeout, what=f"the model service to listen on {self.url}")
        self._check_alive()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.process.poll() is not None or http_status(f"{self.url}/api/health/ready") == 200,
                   timeout, what=f"{self.url}/api/health/ready to answer 200")
        self._check_alive()

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the model service exited with {self.process.returncode}:\n{self.logs()}")

    def logs(self) -> str:
        return Path(self.log_file).read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        Path(self.log_file).unlink(missing_ok=True)

    def __enter__(self) -> "ModelService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


MODEL_ARTIFACT = REPO / "examples" / "insurance_charges_model" / "model_files" / "insurance_charges_model-0.1.0.joblib"
MODEL_FILES_HINT = f"{MODEL_ARTIFACT} is missing: run `make setup` (or `make model`) to train the example model"


def artifact_missing() -> bool:
    return not MODEL_ARTIFACT.is_file()
