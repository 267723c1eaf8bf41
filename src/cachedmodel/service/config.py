"""Find and load the rest-model-service YAML configuration (REST_CONFIG), with errors that name the problem."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import yaml
from pydantic import ValidationError
from rest_model_service.configuration import ServiceConfiguration

DEFAULT_CONFIG = "rest_config.yaml"


class ConfigurationFileError(ValueError):
    """The service configuration file is missing or invalid; the message says which file and what."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$REST_CONFIG, or rest_config.yaml in the working directory (rest-model-service's own rule)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("REST_CONFIG") or DEFAULT_CONFIG)


def parse_configuration(text: str, source: str = "<string>") -> ServiceConfiguration:
    """YAML text -> ServiceConfiguration (pure)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigurationFileError(f"{source}: not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ConfigurationFileError(f"{source}: expected a mapping with a 'models' list, got {type(document).__name__}")
    try:
        return ServiceConfiguration(**document)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise ConfigurationFileError(f"{source}: invalid service configuration: {problems}") from error


def load_configuration(path: Path | str | None = None) -> ServiceConfiguration:
    """Read the configuration file (default: config_path())."""
    path = Path(path) if path is not None else config_path()
    if not path.is_file():
        raise ConfigurationFileError(f"service configuration {str(path)!r} not found: set REST_CONFIG to the "
                                     f"path of a rest-model-service YAML file")
    return parse_configuration(path.read_text(), source=str(path))
