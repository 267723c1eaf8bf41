"""Validation of the decorator's keyword options, with `${NAME}` / `${NAME:-default}` env expansion.

Everything that can be checked without the model is checked here, when the decorator is built, so a
bad service configuration fails at start-up with a message naming the option (never at the first
request). Field names (`hashing_fields`, `reduced_precision_fields`) are checked when the model is set.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping
from urllib.parse import urlsplit

SERDERS = ("JSON", "MessagePack")
URL_SCHEMES = ("redis", "rediss", "unix")

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigurationError(ValueError):
    """A decorator option is invalid; the message names the option."""


@dataclass(frozen=True)
class CacheOptions:
    """The validated options of a RedisCachingDecorator (defaults are the documented ones)."""

    # where Redis is: host/port/database, or url (redis://, rediss://, unix://)
    host: str = "localhost"
    port: int = 6379
    database: int = 0
    url: str | None = None
    username: str | None = None
    password: str | None = None
    ssl_ca_certs: str | None = None
    # what is keyed and how values are stored
    prefix: str = ""
    hashing_fields: tuple[str, ...] | None = None
    serder: str = "MessagePack"
    use_compression: bool = False
    reduced_precision_fields: tuple[str, ...] | None = None
    number_of_places: int | None = None
    ttl_seconds: float | None = None
    # failure handling: short redis-py timeouts and a circuit breaker
    socket_timeout: float = 0.25
    socket_connect_timeout: float = 0.25
    max_connections: int | None = None
    circuit_breaker_failures: int = 3
    circuit_breaker_reset_seconds: float = 5.0
    # in-process tier and stampede protection
    local_cache_size: int = 0
    local_cache_ttl_seconds: float = 30.0
    single_flight: bool = True


OPTION_NAMES = tuple(f.name for f in fields(CacheOptions))


def expand_env(value: Any, option: str, environ: Mapping[str, str] | None = None) -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in strings (also inside lists) with environment values."""
    environ = os.environ if environ is None else environ
    if isinstance(value, (list, tuple)):
        return [expand_env(item, option, environ) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigurationError(f"option '{option}': environment variable {name} is not set "
                                 f"(use ${{{name}:-default}} to give a default)")

    return _ENV_PATTERN.sub(replace, value)


def _int(option: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f"option '{option}' must be an integer, got {value!r}")
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigurationError(f"option '{option}' must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"option '{option}' must be >= {minimum}, got {number}")
    return number


def _number(option: str, value: Any, minimum: float = 0.0, allow_equal: bool = True) -> float:
    if isinstance(value, bool):
        raise ConfigurationError(f"option '{option}' must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"option '{option}' must be a number, got {value!r}") from None
    if number != number or number < minimum or (number == minimum and not allow_equal):
        relation = ">=" if allow_equal else ">"
        raise ConfigurationError(f"option '{option}' must be {relation} {minimum:g}, got {value!r}")
    return number


def _bool(option: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise ConfigurationError(f"option '{option}' must be true or false, got {value!r}")


def _names(option: str, value: Any) -> tuple[str, ...] | None:
    """A list of field names; None or an empty list means 'not given'."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise ConfigurationError(f"option '{option}' must be a list of field names, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigurationError(f"option '{option}' lists a field twice: {list(value)!r}")
    return tuple(value) or None


def _optional_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def validate_url(url: str) -> str:
    """Check a Redis URL's scheme and shape (redis-py parses the rest)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a non-numeric port
    except ValueError as error:
        raise ConfigurationError(f"option 'url' is not a valid Redis URL ({error}): {url!r}") from None
    if parts.scheme not in URL_SCHEMES:
        raise ConfigurationError(f"option 'url' must start with redis://, rediss:// or unix://, got {url!r}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError(f"option 'url' needs a socket path (unix:///path/to/redis.sock), got {url!r}")
    elif not parts.hostname:
        raise ConfigurationError(f"option 'url' needs a host (redis://host:6379/0), got {url!r}")
    if parts.scheme != "unix" and parts.path.strip("/"):
        database = parts.path.strip("/")
        if not database.isdigit():
            raise ConfigurationError(f"option 'url' has a database that is not a number: {database!r}")
    del port
    return url


def parse_options(configuration: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> CacheOptions:
    """Validate the decorator's keyword options into a CacheOptions (raises ConfigurationError)."""
    unknown = sorted(set(configuration) - set(OPTION_NAMES))
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigurationError(f"unknown option '{name}'{hint}; known options: {', '.join(OPTION_NAMES)}")
    raw = {name: expand_env(value, name, environ) for name, value in configuration.items()}
    given = {name for name, value in raw.items() if value not in (None, "")}
    values: dict[str, Any] = {}

    if "url" in given:
        values["url"] = validate_url(str(raw["url"]))
        clash = sorted({"host", "port", "database"} & given)
        if clash:
            raise ConfigurationError(f"option '{clash[0]}' cannot be combined with option 'url' "
                                     f"(put it in the URL instead)")
    if "host" in given:
        if not isinstance(raw["host"], str) or not raw["host"].strip():
            raise ConfigurationError(f"option 'host' must be a host name, got {raw['host']!r}")
        values["host"] = raw["host"].strip()
    if "port" in given:
        values["port"] = _int("port", raw["port"], 1)
        if values["port"] > 65535:
            raise ConfigurationError(f"option 'port' must be <= 65535, got {values['port']}")
    if "database" in given:
        values["database"] = _int("database", raw["database"], 0)
    for name in ("username", "password", "ssl_ca_certs"):
        if name in raw:
            values[name] = _optional_str(raw[name])
    if values.get("ssl_ca_certs") and not str(values.get("url", "")).startswith("rediss://"):
        raise ConfigurationError("option 'ssl_ca_certs' needs a rediss:// url (TLS)")

    if "prefix" in raw:
        prefix = "" if raw["prefix"] is None else raw["prefix"]
        if not isinstance(prefix, str):
            raise ConfigurationError(f"option 'prefix' must be a string, got {prefix!r}")
        values["prefix"] = prefix
    if "hashing_fields" in raw:
        values["hashing_fields"] = _names("hashing_fields", raw["hashing_fields"])
    if "serder" in given:
        serder = {name.lower(): name for name in SERDERS}.get(str(raw["serder"]).lower())
        if serder is None:
            raise ConfigurationError(f"option 'serder' must be one of {', '.join(SERDERS)}, got {raw['serder']!r}")
        values["serder"] = serder
    if "use_compression" in given:
        values["use_compression"] = _bool("use_compression", raw["use_compression"])

    fields_given = _names("reduced_precision_fields", raw.get("reduced_precision_fields"))
    places = raw.get("number_of_places")
    places_given = places not in (None, "")
    if fields_given and not places_given:
        raise ConfigurationError("option 'reduced_precision_fields' needs option 'number_of_places'")
    if places_given and not fields_given:
        raise ConfigurationError("option 'number_of_places' needs option 'reduced_precision_fields'")
    if fields_given:
        values["reduced_precision_fields"] = fields_given
        values["number_of_places"] = _int("number_of_places", places, 0)

    if "ttl_seconds" in given:
        ttl = _number("ttl_seconds", raw["ttl_seconds"], 0.0)
        if 0 < ttl < 0.001:
            raise ConfigurationError(f"option 'ttl_seconds' must be at least 0.001 (or 0 for no expiry), got {ttl}")
        values["ttl_seconds"] = ttl or None
    for name in ("socket_timeout", "socket_connect_timeout", "circuit_breaker_reset_seconds",
                 "local_cache_ttl_seconds"):
        if name in given:
            values[name] = _number(name, raw[name], 0.0, allow_equal=False)
    if "max_connections" in given:
        values["max_connections"] = _int("max_connections", raw["max_connections"], 1)
    if "circuit_breaker_failures" in given:
        values["circuit_breaker_failures"] = _int("circuit_breaker_failures", raw["circuit_breaker_failures"], 1)
    if "local_cache_size" in given:
        values["local_cache_size"] = _int("local_cache_size", raw["local_cache_size"], 0)
    if "single_flight" in given:
        values["single_flight"] = _bool("single_flight", raw["single_flight"])
    return CacheOptions(**values)
