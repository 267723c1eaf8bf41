"""Validation of the decorator's keyword options, with `${NAME}` / `${NAME:-default}` env expansion.

Everything that can be checked without the model is checked here, when the decorator is built, so a
bad service configuration fails at start-up with a message naming the option (never at the first
request). Field names (`hashing_fields`, `reduced_precision_fields`) are checked when the model is set.

The options are a pydantic model (extra='forbid', frozen); `parse_options` adds env expansion,
"did you mean" hints and one ConfigurationError per bad option. Messages and reprs never show
credentials: start-up errors end up in pod termination messages and the CachedModel status.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from typing import Any, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SERDERS = ("JSON", "MessagePack")
URL_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_MAX_CONNECTIONS = 50  # redis-py's BlockingConnectionPool default

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_OPTIONS = ("password", "url", "sentinel_password")  # never echoed in a message


class ConfigurationError(ValueError):
    """A decorator option is invalid; the message names the option."""


# ---------------------------------------------------------------- redaction
_QUERY_SECRET = re.compile(r"((?:^|[?&;])(?:password|passwd|pwd)=)[^&;#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL with its userinfo (user:password@) and any password= query argument replaced by ***.

    Cuts at the last '@' after '://' (not at the first '/', '?' or '#' as a URL parser would), so a
    password containing such characters, which breaks parsing, is still hidden.
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest:
        text = scheme + sep + "***@" + rest.rpartition("@")[2]
    return _QUERY_SECRET.sub(r"\1***", text)


def secrets_of(url: str | None, *passwords: str | None) -> tuple[str, ...]:
    """The secret strings of a configuration: the password options and the URL's password/userinfo."""
    found = [password for password in passwords if password]
    if url:
        scheme, sep, rest = str(url).partition("://")
        if sep and "@" in rest:
            userinfo = rest.rpartition("@")[0]
            found += [userinfo, userinfo.partition(":")[2]]
        found += [match.group(0).partition("=")[2] for match in _QUERY_SECRET.finditer(str(url))]
    return tuple(sorted({secret for secret in found if len(secret) >= 3}, key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret replaced by *** (for exception messages from anywhere, e.g. redis-py)."""
    text = str(text)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------- value parsing (before pydantic's own)
def _no_bool(value: Any, what: str) -> Any:
    if isinstance(value, bool):  # pydantic's lax mode would take True as 1
        raise ValueError(f"must be {what}, got {value!r}")
    return value


def _number_text(value: Any) -> Any:
    """Refuse inf/NaN in any spelling before int()/float() see them (int(inf) is an OverflowError)."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {value!r}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


def _names(value: Any) -> tuple[str, ...] | None:
    """A list of field names (or a comma-separated string); None or an empty list means 'not given'."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"must be a list of field names, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"lists a field twice: {list(value)!r}")
    return tuple(value) or None


def _endpoints(value: Any) -> tuple[str, ...] | None:
    """`host:port` addresses (a list, or a comma-separated string, e.g. from one env var); IPv6 in
    brackets ([::1]:26379). None or an empty list means 'not given'."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"must be a list of host:port addresses, got {value!r}")
    found = []
    for item in value:
        host, sep, port = item.strip().rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or any(char in host for char in "/@ ") or not port.isdigit() \
                or not 1 <= int(port) <= 65535:
            raise ValueError(f"must be a list of host:port addresses, got {item!r}")
        address = f"{host}:{int(port)}" if ":" not in host else f"[{host}]:{int(port)}"
        if address in found:
            raise ValueError(f"lists {address} twice")
        found.append(address)
    return tuple(found) or None


def split_endpoint(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' (as normalized by the options) -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def validate_url(url: str) -> str:
    """Check a Redis URL's scheme and shape (redis-py parses the rest); messages show it redacted."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise ConfigurationError(f"option 'url' is not a valid Redis URL (bad host or port): {shown!r}") from None
    if parts.scheme not in URL_SCHEMES:
        raise ConfigurationError(f"option 'url' must start with redis://, rediss:// or unix://, got {shown!r}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError(f"option 'url' needs a socket path (unix:///path/to/redis.sock), got {shown!r}")
    elif not parts.hostname:
        raise ConfigurationError(f"option 'url' needs a host (redis://host:6379/0), got {shown!r}")
    if parts.scheme != "unix" and parts.path.strip("/"):
        database = parts.path.strip("/")
        if not database.isdigit():
            raise ConfigurationError(f"option 'url' has a database that is not a number: {redact_url(database)!r}")
    return url


class CacheOptions(BaseModel):
    """The validated options of a RedisCachingDecorator (defaults are the documented ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)

    # where Redis is: host/port/database, or url (redis://, rediss://, unix://)
    host: str = "localhost"
    port: int = Field(6379, ge=1, le=65535)
    database: int = Field(0, ge=0)
    url: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = Field(None, repr=False)
    ssl: bool = False  # TLS to the Sentinels and the data nodes (standalone: a rediss:// url says it)
    ssl_ca_certs: Optional[str] = None
    # or a Redis Sentinel deployment (the primary is asked from the Sentinels) ...
    sentinels: Optional[Tuple[str, ...]] = None
    sentinel_service: Optional[str] = None
    sentinel_password: Optional[str] = Field(None, repr=False)
    # ... or a Redis Cluster (startup nodes; the client follows the slot map, MOVED and ASK)
    cluster_nodes: Optional[Tuple[str, ...]] = None
    # what is keyed and how values are stored
    prefix: str = ""
    hashing_fields: Optional[Tuple[str, ...]] = None
    serder: str = "MessagePack"
    use_compression: bool = False
    reduced_precision_fields: Optional[Tuple[str, ...]] = None
    number_of_places: Optional[int] = Field(None, ge=0)
    ttl_seconds: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    # bump to move every key to a new namespace (O(1) invalidation: old entries age out by TTL/eviction)
    epoch: int = Field(0, ge=0)
    # failure handling: short redis-py timeouts, a bounded pool and a circuit breaker
    socket_timeout: float = Field(0.25, gt=0, allow_inf_nan=False)
    socket_connect_timeout: float = Field(0.25, gt=0, allow_inf_nan=False)
    max_connections: int = Field(DEFAULT_MAX_CONNECTIONS, ge=1)  # per pool: sync, and async per event loop
    # wait for a free pooled connection, then bypass; default (None): socket_timeout, the request's own deadline
    pool_timeout: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    circuit_breaker_failures: int = Field(3, ge=1)
    circuit_breaker_reset_seconds: float = Field(5.0, gt=0, allow_inf_nan=False)
    # in-process tier and stampede protection
    local_cache_size: int = Field(0, ge=0)
    local_cache_ttl_seconds: float = Field(30.0, gt=0, allow_inf_nan=False)
    single_flight: bool = True
    # across processes and pods: a Redis lease (SET NX PX) held by the one computing a miss
    shared_single_flight: bool = False
    lease_seconds: float = Field(5.0, gt=0, allow_inf_nan=False)
    # stale-while-revalidate: entries stay servable this long past ttl_seconds while one caller refreshes
    stale_seconds: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    early_refresh_beta: float = Field(0.0, ge=0, allow_inf_nan=False)  # XFetch; 0 = only once stale
    # Redis-side figures (INFO) for /metrics, sampled in the background; 0 = off
    redis_info_interval_seconds: float = Field(15.0, ge=0, allow_inf_nan=False)

    @property
    def connection_wait(self) -> float:
        """How long a Redis call waits for a free pooled connection before the request bypasses the cache:
        pool_timeout when set, else socket_timeout (busy connections are a wait, not a reason to skip Redis)."""
        return self.socket_timeout if self.pool_timeout is None else self.pool_timeout

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "url" and value else value)

    # ------------------------------------------------------------ per-field normalization
    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"must be a host name, got {value!r}")
        return value.strip()

    @field_validator("port", "database", "number_of_places", "max_connections", "circuit_breaker_failures",
                     "local_cache_size", "epoch", mode="before")
    @classmethod
    def _integer(cls, value: Any) -> Any:
        return _number_text(_no_bool(value, "an integer"))

    @field_validator("ttl_seconds", "socket_timeout", "socket_connect_timeout", "pool_timeout",
                     "circuit_breaker_reset_seconds", "local_cache_ttl_seconds", "redis_info_interval_seconds",
                     "lease_seconds", "stale_seconds", "early_refresh_beta", mode="before")
    @classmethod
    def _float(cls, value: Any) -> Any:
        return _number_text(_no_bool(value, "a number"))

    @field_validator("ttl_seconds", mode="after")
    @classmethod
    def _ttl(cls, value: float | None) -> float | None:
        if value is not None and 0 < value < 0.001:
            raise ValueError(f"must be at least 0.001 (or 0 for no expiry), got {value}")
        return value or None  # 0 = no expiry

    @field_validator("sentinels", "cluster_nodes", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        return _endpoints(value)

    @field_validator("sentinel_service", mode="before")
    @classmethod
    def _service_name(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not value.strip() or any(char.isspace() for char in value.strip()):
            raise ValueError(f"must be the name of a primary the Sentinels monitor, got {value!r}")
        return value.strip()

    @field_validator("stale_seconds", mode="after")
    @classmethod
    def _stale(cls, value: float | None) -> float | None:
        return value or None  # 0 = off

    @field_validator("username", "password", "sentinel_password", "ssl_ca_certs", mode="before")
    @classmethod
    def _optional_str(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, (bool, list, tuple, dict, set)):  # str() would make "['x']" a password
            raise ValueError(f"must be a string, got a {type(value).__name__}")
        return str(value)

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        return None if value is None or value == "" else validate_url(str(value))

    @field_validator("prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> Any:
        value = "" if value is None else value
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        return value

    @field_validator("hashing_fields", "reduced_precision_fields", mode="before")
    @classmethod
    def _field_names(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("serder", mode="before")
    @classmethod
    def _serder(cls, value: Any) -> Any:
        serder = {name.lower(): name for name in SERDERS}.get(str(value).lower())
        if serder is None:
            raise ValueError(f"must be one of {', '.join(SERDERS)}, got {value!r}")
        return serder

    @field_validator("use_compression", "single_flight", "ssl", "shared_single_flight", mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.strip().lower() in ("true", "1", "yes", "on")
        raise ValueError(f"must be true or false, got {value!r}")

    # ------------------------------------------------------------ rules between options
    @model_validator(mode="after")
    def _combinations(self) -> "CacheOptions":
        given = self.model_fields_set
        if self.sentinels and self.cluster_nodes:
            raise ConfigurationError("option 'cluster_nodes' cannot be combined with option 'sentinels' "
                                     "(one Redis deployment: Sentinel or Cluster)")
        topology = "sentinels" if self.sentinels else "cluster_nodes" if self.cluster_nodes else None
        if topology:
            where = "the Sentinels name the primary" if self.sentinels else "the cluster's nodes are listed"
            for option in ("url", "host", "port"):
                if option in given:
                    raise ConfigurationError(f"option '{option}' cannot be combined with option '{topology}' "
                                             f"({where} there)")
        if self.cluster_nodes and "database" in given and self.database != 0:
            raise ConfigurationError("option 'database' cannot be combined with option 'cluster_nodes' "
                                     "(Redis Cluster has database 0 only)")
        if self.sentinels and not self.sentinel_service:
            raise ConfigurationError("option 'sentinels' needs option 'sentinel_service' "
                                     "(the name of the primary the Sentinels monitor)")
        for option in ("sentinel_service", "sentinel_password"):
            if getattr(self, option) and not self.sentinels:
                raise ConfigurationError(f"option '{option}' needs option 'sentinels'")
        if self.url:
            clash = sorted({"host", "port", "database"} & given)
            if clash:
                raise ConfigurationError(f"option '{clash[0]}' cannot be combined with option 'url' "
                                         f"(put it in the URL instead)")
            if "ssl" in given:
                raise ConfigurationError("option 'ssl' cannot be combined with option 'url' "
                                         "(rediss:// means TLS, redis:// none)")
        if self.ssl_ca_certs and not (self.ssl or str(self.url or "").startswith("rediss://")):
            raise ConfigurationError("option 'ssl_ca_certs' needs a rediss:// url or option 'ssl' (TLS)")
        if self.stale_seconds and not self.ttl_seconds:
            raise ConfigurationError("option 'stale_seconds' needs option 'ttl_seconds' (entries are stale "
                                     "once their TTL passed)")
        if self.early_refresh_beta and not self.stale_seconds:
            raise ConfigurationError("option 'early_refresh_beta' needs option 'stale_seconds' (the early "
                                     "refresh runs in the background while the entry is served)")
        if "lease_seconds" in given and not self.shared_single_flight:
            raise ConfigurationError("option 'lease_seconds' needs option 'shared_single_flight'")
        if self.reduced_precision_fields and self.number_of_places is None:
            raise ConfigurationError("option 'reduced_precision_fields' needs option 'number_of_places'")
        if self.number_of_places is not None and not self.reduced_precision_fields:
            raise ConfigurationError("option 'number_of_places' needs option 'reduced_precision_fields'")
        return self


OPTION_NAMES = tuple(CacheOptions.model_fields)


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


def _message(error: dict) -> str:
    """One pydantic error as "option 'name' ...", never echoing the value of a secret option."""
    option = str(error["loc"][0]) if error.get("loc") else ""
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigurationError):
        return str(cause)
    text = str(cause) if isinstance(cause, ValueError) else error["msg"].replace("Input should be", "must be")
    if not option:
        return text
    if cause is None and option not in _SECRET_OPTIONS:
        text += f", got {error.get('input')!r}"
    return f"option '{option}' {text}"


def parse_options(configuration: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> CacheOptions:
    """Validate the decorator's keyword options into a CacheOptions (raises ConfigurationError).

    A value that is None or "" (e.g. `${VAR:-}` of an unset variable) means "not given": the default.
    """
    unknown = sorted(set(configuration) - set(OPTION_NAMES))
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigurationError(f"unknown option '{name}'{hint}; known options: {', '.join(OPTION_NAMES)}")
    raw = {name: expand_env(value, name, environ) for name, value in configuration.items()}
    given = {name: value for name, value in raw.items() if value is not None and value != ""}
    try:
        return CacheOptions(**given)
    except ValidationError as error:  # never chained: pydantic's own text shows the input values
        message = _message(error.errors(include_url=False)[0])
    secrets = secrets_of(str(raw.get("url") or ""), str(raw.get("password") or ""),
                         str(raw.get("sentinel_password") or ""))
    raise ConfigurationError(scrub(message, secrets)) from None
