"""Option validation: every bad option fails when the decorator is built, with a message naming it."""
import pytest

from cachedmodel.options import CacheOptions, ConfigurationError, expand_env, parse_options


def test_defaults():
    options = parse_options({})
    assert options == CacheOptions()
    assert (options.serder, options.ttl_seconds, options.socket_timeout, options.socket_connect_timeout) == \
        ("MessagePack", None, 0.25, 0.25)
    assert options.local_cache_size == 0 and options.single_flight is True


@pytest.mark.parametrize("configuration, named", [
    ({"serder": "pickle"}, "serder"),
    ({"url": "http://localhost:6379"}, "url"),
    ({"url": "redis://"}, "url"),
    ({"url": "redis://host:notaport/0"}, "url"),
    ({"url": "redis://host:6379/zero"}, "url"),
    ({"url": "unix://"}, "url"),
    ({"url": "redis://h:6379/0", "host": "other"}, "host"),
    ({"ttl_seconds": -1}, "ttl_seconds"),
    ({"ttl_seconds": "soon"}, "ttl_seconds"),
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"port": "x"}, "port"),
    ({"database": -1}, "database"),
    ({"socket_timeout": 0}, "socket_timeout"),
    ({"socket_connect_timeout": -0.5}, "socket_connect_timeout"),
    ({"circuit_breaker_failures": 0}, "circuit_breaker_failures"),
    ({"circuit_breaker_reset_seconds": 0}, "circuit_breaker_reset_seconds"),
    ({"local_cache_size": -1}, "local_cache_size"),
    ({"local_cache_ttl_seconds": 0}, "local_cache_ttl_seconds"),
    ({"use_compression": "maybe"}, "use_compression"),
    ({"single_flight": 3}, "single_flight"),
    ({"hashing_fields": "a,a"}, "hashing_fields"),
    ({"hashing_fields": [1]}, "hashing_fields"),
    ({"reduced_precision_fields": ["bmi"]}, "number_of_places"),
    ({"number_of_places": 2}, "reduced_precision_fields"),
    ({"reduced_precision_fields": ["bmi"], "number_of_places": -1}, "number_of_places"),
    ({"prefix": 5}, "prefix"),
    ({"ssl_ca_certs": "/ca.pem"}, "ssl_ca_certs"),
    ({"ttl": 60}, "ttl"),
    ({"epoch": -1}, "epoch"),
    ({"epoch": "next"}, "epoch"),
    ({"epoch": True}, "epoch"),
    ({"epoch": 1.5}, "epoch"),
    ({"sered": "JSON"}, "sered"),
])
def test_bad_option_is_named(configuration, named):
    with pytest.raises(ConfigurationError, match=f"'{named}'"):
        parse_options(configuration)


def test_unknown_option_suggests_the_close_name():
    with pytest.raises(ConfigurationError, match="did you mean 'ttl_seconds'"):
        parse_options({"ttl_second": 5})


def test_values_are_normalized():
    options = parse_options({"url": "rediss://cache:6380/2", "serder": "json", "use_compression": "true",
                             "ttl_seconds": "0", "hashing_fields": "age, bmi", "port": None,
                             "reduced_precision_fields": ["bmi"], "number_of_places": "2", "password": ""})
    assert options.serder == "JSON" and options.use_compression is True and options.ttl_seconds is None
    assert options.hashing_fields == ("age", "bmi") and options.number_of_places == 2 and options.password is None
    assert parse_options({"ttl_seconds": 30}).ttl_seconds == 30
    assert parse_options({"url": "unix:///run/redis.sock"}).url == "unix:///run/redis.sock"


def test_env_expansion():
    env = {"REDIS_URL": "redis://cache:6379/1", "REDIS_PASSWORD": "s3cret", "PORT": "6380"}
    assert expand_env("${REDIS_URL}", "url", env) == "redis://cache:6379/1"
    assert expand_env("${MISSING:-redis://localhost:6379/0}", "url", env) == "redis://localhost:6379/0"
    assert expand_env("${MISSING:-}", "password", env) == ""
    assert expand_env("redis://:${REDIS_PASSWORD}@h:${PORT}/0", "url", env) == "redis://:s3cret@h:6380/0"
    assert expand_env(["${PORT}", 3], "hashing_fields", env) == ["6380", 3]
    assert expand_env(5, "port", env) == 5
    options = parse_options({"url": "${REDIS_URL}", "password": "${REDIS_PASSWORD:-}",
                             "ttl_seconds": "${TTL:-60}"}, env)
    assert (options.url, options.password, options.ttl_seconds) == ("redis://cache:6379/1", "s3cret", 60)
    assert parse_options({"host": "h", "port": "${PORT}"}, env).port == 6380
    assert parse_options({"url": "${REDIS_URL:-}", "host": "h"}, {}).url is None  # empty url: host/port used


def test_missing_env_variable_names_option_and_variable():
    with pytest.raises(ConfigurationError, match="'password'.*REDIS_PASSWORD"):
        parse_options({"password": "${REDIS_PASSWORD}"}, {})


NUMERIC_OPTIONS = ["port", "database", "number_of_places", "ttl_seconds", "socket_timeout", "socket_connect_timeout",
                   "pool_timeout", "max_connections", "circuit_breaker_failures", "circuit_breaker_reset_seconds",
                   "local_cache_size", "local_cache_ttl_seconds"]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf", "nan", "1e999", "Infinity"])
@pytest.mark.parametrize("name", NUMERIC_OPTIONS)
def test_non_finite_numbers_are_refused_naming_the_option(name, value):
    """`ttl_seconds: inf` used to be accepted and then made every SET fail; no numeric option takes inf/NaN."""
    configuration = {name: value}
    if name == "number_of_places":
        configuration["reduced_precision_fields"] = ["bmi"]
    with pytest.raises(ConfigurationError, match=f"option '{name}'"):
        parse_options(configuration)


def test_options_built_directly_are_validated_too():
    """CacheOptions is the pydantic model itself: building it by hand cannot bypass the checks."""
    with pytest.raises(ValueError, match="ttl_seconds"):
        CacheOptions(ttl_seconds=float("inf"))
    with pytest.raises(ValueError):
        CacheOptions(ttl=5)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("name", ["port", "ttl_seconds", "max_connections", "socket_timeout"])
def test_booleans_are_not_numbers(name, value):
    with pytest.raises(ConfigurationError, match=f"option '{name}'"):
        parse_options({name: value})


SECRET = "hunter2-s3cret"


@pytest.mark.parametrize("url", [
    f"http://:{SECRET}@cache:6379/0",                 # bad scheme
    f"redis://:{SECRET}@cache:notaport/0",            # bad port
    f"redis://:{SECRET}@cache:6379/zero",             # bad database
    f"redis://:{SECRET}@",                            # no host
    f"redis://user:{SECRET}@cache:6379/0?x=1#frag",   # fine, but combined with host below
    f"redis://:ab#{SECRET}@cache:6379/0",             # a '#' in the password breaks URL parsing
    f"redis://cache:6379/zero?password={SECRET}",     # password as a query argument
])
def test_a_bad_url_never_shows_its_password(url):
    """The start-up error becomes the pod's termination message and the CachedModel status."""
    with pytest.raises(ConfigurationError, match="'url'|'host'") as caught:
        parse_options({"url": url, "host": "other"} if "#frag" in url else {"url": url})
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None or \
        SECRET not in str(caught.value.__context__)


def test_a_bad_option_never_shows_the_password_given_through_env():
    with pytest.raises(ConfigurationError, match="'port'") as caught:
        parse_options({"password": "${P}", "port": "${P}"}, {"P": SECRET})
    assert SECRET not in str(caught.value)


def test_repr_of_options_hides_credentials():
    options = parse_options({"url": f"redis://admin:{SECRET}@cache:6379/0?password={SECRET}", "password": SECRET})
    assert options.password == SECRET and SECRET in options.url  # still usable
    for text in (repr(options), str(options)):
        assert SECRET not in text and "cache:6379" in text, text


def test_redact_keeps_the_address_and_hides_userinfo():
    from cachedmodel.options import redact_url

    assert redact_url(f"redis://user:{SECRET}@cache:6379/0") == "redis://***@cache:6379/0"
    assert redact_url(f"rediss://:{SECRET}@cache") == "rediss://***@cache"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert redact_url(f"unix:///run/redis.sock?db=1&password={SECRET}") == "unix:///run/redis.sock?db=1&password=***"


def test_pool_options():
    options = parse_options({"max_connections": "8", "pool_timeout": "0.5"})
    assert (options.max_connections, options.pool_timeout) == (8, 0.5)
    assert parse_options({}).max_connections >= 1  # always bounded
    with pytest.raises(ConfigurationError, match="'pool_timeout'"):
        parse_options({"pool_timeout": 0})


# ---------------------------------------------------------------- Sentinel and Cluster topologies
@pytest.mark.parametrize("configuration, named", [
    ({"sentinels": "h1:26379"}, "sentinel_service"),
    ({"sentinel_service": "mymaster"}, "sentinels"),
    ({"sentinel_password": "pw-secret"}, "sentinels"),
    ({"sentinels": "h1", "sentinel_service": "m"}, "sentinels"),
    ({"sentinels": "h1:0", "sentinel_service": "m"}, "sentinels"),
    ({"sentinels": "h1:70000", "sentinel_service": "m"}, "sentinels"),
    ({"sentinels": ["h1:26379", "h1:26379"], "sentinel_service": "m"}, "sentinels"),
    ({"sentinels": [26379], "sentinel_service": "m"}, "sentinels"),
    ({"sentinels": "h1:26379", "sentinel_service": "two words"}, "sentinel_service"),
    ({"sentinels": "h1:26379", "sentinel_service": "m", "url": "redis://h:6379/0"}, "url"),
    ({"sentinels": "h1:26379", "sentinel_service": "m", "host": "h"}, "host"),
    ({"sentinels": "h1:26379", "sentinel_service": "m", "port": 6380}, "port"),
    ({"cluster_nodes": "h1:7000", "sentinels": "h1:26379", "sentinel_service": "m"}, "cluster_nodes"),
    ({"cluster_nodes": "h1:7000", "database": 1}, "database"),
    ({"cluster_nodes": "h1:7000", "url": "redis://h:6379/0"}, "url"),
    ({"cluster_nodes": "redis://h1:7000"}, "cluster_nodes"),
    ({"cluster_nodes": "user@h1:7000"}, "cluster_nodes"),
    ({"url": "redis://h:6379/0", "ssl": True}, "ssl"),
    ({"ssl": "sometimes"}, "ssl"),
    ({"cluster_nodes": "h1:7000", "ssl_ca_certs": "/ca.pem"}, "ssl_ca_certs"),
])
def test_bad_topology_is_named(configuration, named):
    with pytest.raises(ConfigurationError, match=f"'{named}'"):
        parse_options(configuration)


def test_topologies_are_normalized():
    options = parse_options({"sentinels": " s1:26379, s2:26380 ,[::1]:26381", "sentinel_service": "cache",
                             "sentinel_password": "${SENTINEL_PW}", "database": 2}, {"SENTINEL_PW": "pw"})
    assert options.sentinels == ("s1:26379", "s2:26380", "[::1]:26381")
    assert (options.sentinel_service, options.sentinel_password, options.database) == ("cache", "pw", 2)
    options = parse_options({"cluster_nodes": ["n1:7000", "n2:7001"], "ssl": "true", "ssl_ca_certs": "/ca.pem",
                             "database": 0})
    assert options.cluster_nodes == ("n1:7000", "n2:7001") and options.ssl is True
    assert parse_options({"cluster_nodes": "${NODES}"}, {"NODES": "a:1,b:2"}).cluster_nodes == ("a:1", "b:2")
    assert parse_options({"sentinels": "${S:-}", "sentinel_service": "${SVC:-}"}, {}).sentinels is None


def test_sentinel_password_is_never_shown():
    with pytest.raises(ConfigurationError) as raised:
        parse_options({"sentinel_password": "hunter2-secret"})
    assert "hunter2-secret" not in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        parse_options({"sentinels": "h:1", "sentinel_service": "m", "sentinel_password": ["hunter2-secret"]})
    assert "hunter2-secret" not in str(raised.value)
    options = parse_options({"sentinels": "h:1", "sentinel_service": "m", "sentinel_password": "hunter2-secret"})
    assert "hunter2-secret" not in repr(options)
