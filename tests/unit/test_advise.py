"""cachedmodel-advise, the pure parts: redis.conf sizes, the exact simulators against hand-computed
cases, traces, the recommendation, argument errors (exit 2, one line, no traceback), the key trace writer."""
from __future__ import annotations

import json
import os
import random
import stat
import threading

import pytest

from cachedmodel.advise import cli, report, simulate, traces
from cachedmodel.advise.replay import Cell, choose_keys_per_call
from cachedmodel.advise.units import format_size, parse_size, parse_sizes
from cachedmodel.keytrace import (DEFAULT_MAX_BYTES, KeyTraceSettingsError, KeyTraceWriter, key_trace_settings)

A, B, C, D = 0, 1, 2, 3


# ---------------------------------------------------------------- sizes
@pytest.mark.parametrize("text, size", [("1", 1), ("100", 100), ("1k", 1000), ("1kb", 1024), ("2MB", 2 * 1024 ** 2),
                                        ("3m", 3_000_000), ("1g", 10 ** 9), ("1gb", 1024 ** 3), (" 64mb ", 64 << 20)])
def test_sizes_are_read_like_redis_conf(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "mb", "1.5mb", "-1mb", "0", "2tb", "1 m b", "ten"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError, match="redis.conf units|above 0"):
        parse_size(text)


def test_size_lists_are_sorted_and_spelled_back():
    assert parse_sizes("64mb,2mb,8mb,2mb") == [2 << 20, 8 << 20, 64 << 20]
    assert [format_size(s) for s in parse_sizes("2mb,1536kb,1gb,1000")] == ["1000", "1536kb", "2mb", "1gb"]


# ---------------------------------------------------------------- exact simulators, by hand
def test_lru_evicts_the_least_recently_used():
    # cap 2: A m [A]; B m [A B]; A h [B A]; C m, B out [A C]; A h [C A]; B m, C out [A B]
    assert simulate.lru_hits([A, B, A, C, A, B], 2) == 2
    # A m; B m; C m (A out); A m (B out); D m (C out); B m (A out): a loop one larger than the cache never hits
    assert simulate.lru_hits([A, B, C, A, D, B], 2) == 0
    assert simulate.lru_hits([A, A, B, C, A], 2) == 1  # A out when C comes: older than B
    assert simulate.lru_hits([A, B, A, B], 0) == 0
    assert simulate.lru_hits([A, B, C, A, B, C], 3) == 3


def test_lfu_evicts_the_least_frequently_used_then_the_least_recent():
    # A m(1); A h(2); B m(1); C m: B out (count 1 < 2); A h -> 2 hits (LRU above: 1)
    assert simulate.lfu_hits([A, A, B, C, A], 2) == 2
    # A, B both count 1: C evicts A, the least recent of the two
    # A m; B m; C m (A out) {B1 C1}; B h {C1 B2}; A m (C out) {B2 A1}; C m (A out); B h
    assert simulate.lfu_hits([A, B, C, B, A, C, B], 2) == 2
    assert simulate.lfu_hits([A, B], 0) == 0


def test_lfu_by_hand_step_by_step():
    # cap 2: A m {A1}; A h {A2}; A h {A3}; B m {A3 B1}; C m (B out) {A3 C1}; B m (C out) {A3 B1};
    # C m (B out) {A3 C1}; D m (C out) {A3 D1}; A h -> hits: 2 + 1 = 3
    assert simulate.lfu_hits([A, A, A, B, C, B, C, D, A], 2) == 3


def test_exact_lru_never_hits_less_with_more_room():
    rng = random.Random(3)
    for _ in range(30):
        ids = [rng.randrange(20) for _ in range(300)]
        hits = [simulate.lru_hits(ids, cap) for cap in range(0, 22)]
        assert hits == sorted(hits)
        assert hits[-1] == len(ids) - len(set(ids))  # room for all: only compulsory misses


def test_compulsory_miss_bound():
    assert simulate.compulsory_miss_bound([A, B, A, A]) == 0.5
    assert simulate.compulsory_miss_bound([]) == 0.0


# ---------------------------------------------------------------- traces
def test_zipf_traces_are_seeded_and_keys_are_shaped_like_the_decorators():
    one, two = traces.zipf(1.0, 100, 1000, seed=5), traces.zipf(1.0, 100, 1000, seed=5)
    assert list(one.ids) == list(two.ids) and one.keys == two.keys
    assert list(traces.zipf(1.0, 100, 1000, seed=6).ids) != list(one.ids)
    assert all(len(k) == len("advise:") + 22 and k.startswith(b"advise:") for k in one.keys)
    counts = [list(one.ids).count(i) for i in range(3)]
    assert counts[0] > counts[2]  # the first key drawn is usually the most popular: ids by first appearance
    assert traces.zipf(0.0, 5, 50).distinct <= 5


def test_key_files_keep_decorator_keys_and_shape_other_identifiers(tmp_path):
    path = tmp_path / "keys.txt"
    key = "insurance:bKyOODXO__K5BiMn_dFmNg"
    path.write_text(f"{key}\nuser-17\n\n{key}\nuser-17\r\n")
    trace = traces.read_keys(path)
    assert trace.requests == 4 and trace.distinct == 2 and list(trace.ids) == [0, 1, 0, 1]
    assert trace.keys[0] == key.encode() and trace.keys[1] == traces.shaped_key(b"user-17")


@pytest.mark.parametrize("content, message", [(b"a\n" + b"x" * 2000 + b"\n", "keys.txt:2: a line of 2000 bytes"),
                                              (b"a\nb\0c\n", "keys.txt:2: a NUL byte"),
                                              (b"\n\n", "no requests")])
def test_bad_key_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "keys.txt"
    path.write_bytes(content)
    with pytest.raises(traces.TraceError, match=message):
        traces.read_keys(path)


# ---------------------------------------------------------------- recommendation
def _cell(policy, size, ratio, keys=100, used=2_000_000):
    return Cell(policy, size, 5, 1000, int(ratio * 1000), ratio, 0, 0, 0, keys, used, 1_000_000, 1, 0.1)


def test_recommendation_is_the_smallest_size_reaching_the_target_with_its_best_policy():
    cells = [_cell("allkeys-lru", 2 << 20, 0.5), _cell("allkeys-lfu", 2 << 20, 0.6),
             _cell("allkeys-lru", 8 << 20, 0.8), _cell("allkeys-lfu", 8 << 20, 0.85), _cell("allkeys-lru", 64 << 20, 0.9)]
    rec = report.recommend(cells, 0.8)
    assert (rec["met"], rec["maxmemory"], rec["policy"]) == (True, "8mb", "allkeys-lfu")
    rec = report.recommend(cells, 0.95)
    assert (rec["met"], rec["maxmemory"], rec["policy"]) == (False, "64mb", "allkeys-lru")
    assert "above 64mb" in rec["reason"]


def test_bytes_per_entry_is_measured_from_the_fullest_cell():
    assert report.bytes_per_entry([_cell("a", 1, 0.1, keys=10, used=1_001_000), _cell("a", 2, 0.2, keys=1000,
                                                                                       used=1_300_000)]) == 300


def test_keys_per_call_stays_a_small_share_of_the_capacity():
    assert choose_keys_per_call(2 << 20, 300) == 13
    assert choose_keys_per_call(100_000, 300) == 1
    assert choose_keys_per_call(1 << 30, 300) == 64


# ---------------------------------------------------------------- arguments: exit 2, one line naming the problem
@pytest.mark.parametrize("argv, message", [
    ([], "give one workload"),
    (["--keys", "k.txt", "--zipf", "1"], "got --keys and --zipf"),
    (["--zipf", "1", "--distinct", "10"], "--zipf needs --distinct N and --requests R"),
    (["--zipf", "1", "--distinct", "10", "--requests", "many"], "a number of requests, got 'many'"),
    (["--zipf", "1", "--distinct", "10", "--requests", "10", "--policies", "lru"], "unknown eviction policy lru"),
    (["--zipf", "1", "--distinct", "10", "--requests", "10", "--policies", "volatile-lru"], "give --ttl-seconds"),
    (["--zipf", "1", "--distinct", "10", "--requests", "10", "--sizes", "2tb"], "--sizes: '2tb' is not a size"),
    (["--zipf", "1", "--distinct", "10", "--requests", "10", "--samples", "x"], "--samples takes whole numbers"),
    (["--zipf", "1", "--distinct", "10", "--requests", "10", "--target-hit-ratio", "1.5"], "--target-hit-ratio"),
    (["--zipf", "1", "--distinct", "10", "--requests", "10", "--value-bytes", "0"], "--value-bytes must be at least 1"),
    (["--zipf", "-1", "--distinct", "10", "--requests", "10"], "--zipf must be a number >= 0"),
    (["--keys", "/nonexistent/keys.txt"], "cannot read /nonexistent/keys.txt"),
    (["--config", "examples/rest_config.yaml"], "--config needs --requests FILE"),
    (["--config", "/nonexistent.yaml", "--requests", "r.jsonl"], "'/nonexistent.yaml' not found"),
])
def test_argument_errors_exit_2_naming_the_problem(argv, message, capsys, tmp_path):
    assert cli.main(argv + ["--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_default_sizes_span_the_working_set():
    sizes = cli.default_sizes(10_000, 300)
    assert len(sizes) == 4 and sizes == sorted(sizes) and all(s % 65536 == 0 for s in sizes)
    assert sizes[-1] >= cli.REDIS_BASELINE + 10_000 * 300 and sizes[0] < cli.REDIS_BASELINE + 10_000 * 300 / 8


# ---------------------------------------------------------------- the key trace writer
def test_key_trace_appends_one_key_per_line_created_0600(tmp_path):
    path = tmp_path / "trace.txt"
    writer = KeyTraceWriter(str(path), 1000)
    writer(b"insurance:aaaaaaaaaaaaaaaaaaaaaa")
    writer("insurance:bbbbbbbbbbbbbbbbbbbbbb")
    writer.close()
    assert path.read_text().splitlines() == ["insurance:aaaaaaaaaaaaaaaaaaaaaa", "insurance:bbbbbbbbbbbbbbbbbbbbbb"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_key_trace_stops_at_its_bound_with_one_warning_and_counts_earlier_runs(tmp_path, caplog):
    path = tmp_path / "trace.txt"
    writer = KeyTraceWriter(str(path), 25)  # two 11-byte lines fit, a third does not
    for key in (b"0123456789", b"abcdefghij", b"ABCDEFGHIJ", b"KLMNOPQRST"):
        writer(key)
    assert path.read_bytes() == b"0123456789\nabcdefghij\n" and writer.full
    assert sum("is full" in r.getMessage() for r in caplog.records) == 1
    again = KeyTraceWriter(str(path), 25)  # a restart appends, under the same bound
    again(b"0123456789")
    assert path.read_bytes() == b"0123456789\nabcdefghij\n"


def test_key_trace_lines_never_interleave_across_threads(tmp_path):
    path = tmp_path / "trace.txt"
    writer = KeyTraceWriter(str(path), 10 ** 7)
    keys = [f"k{t}:{'x' * 22}".encode() for t in range(8)]

    def run(key):
        for _ in range(500):
            writer(key)
    threads = [threading.Thread(target=run, args=(k,)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 8 * 500 and set(lines) == set(keys)


def test_key_trace_settings(tmp_path):
    assert key_trace_settings({}).path is None
    assert key_trace_settings({}).max_bytes == DEFAULT_MAX_BYTES
    settings = key_trace_settings({"CACHEDMODEL_KEY_TRACE": str(tmp_path / "t"), "CACHEDMODEL_KEY_TRACE_MAX_BYTES": "99"})
    assert (settings.path, settings.max_bytes) == (str(tmp_path / "t"), 99)
    for environ, message in [({"CACHEDMODEL_KEY_TRACE_MAX_BYTES": "1e6"}, "CACHEDMODEL_KEY_TRACE_MAX_BYTES must be a whole"),
                             ({"CACHEDMODEL_KEY_TRACE_MAX_BYTES": "0"}, "at least 1"),
                             ({"CACHEDMODEL_KEY_TRACE": "/nonexistent/dir/t"}, "CACHEDMODEL_KEY_TRACE: directory"),
                             ({"CACHEDMODEL_KEY_TRACE": str(tmp_path)}, "is a directory")]:
        with pytest.raises(KeyTraceSettingsError, match=message):
            key_trace_settings(environ)


def test_the_service_exits_2_naming_a_bad_key_trace_variable(capsys):
    from cachedmodel.service.__main__ import main
    assert main({"CACHEDMODEL_KEY_TRACE_MAX_BYTES": "lots"}) == 2
    assert "CACHEDMODEL_KEY_TRACE_MAX_BYTES must be a whole number" in capsys.readouterr().err


# ---------------------------------------------------------------- request bodies keyed offline (the example model)
@pytest.fixture
def decorator():
    from cachedmodel.advise.offline import build_decorator
    from cachedmodel.testing.model_service import EXAMPLE_CONFIG, MODEL_FILES_HINT, artifact_missing
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)
    built = build_decorator(EXAMPLE_CONFIG)
    yield built
    built.close()


BODY = {"age": 42, "sex": "female", "bmi": 27.5, "children": 2, "smoker": False, "region": "northwest"}


def test_request_bodies_are_keyed_with_the_decorator_and_values_measured(decorator, tmp_path):
    from cachedmodel.advise.offline import read_requests
    path = tmp_path / "requests.jsonl"
    other = {**BODY, "age": 43}
    path.write_text("\n".join(json.dumps(b) for b in (BODY, other, BODY, {**BODY, "bmi": 27.50})) + "\n")
    trace = read_requests(path, decorator, sample=10)
    assert list(trace.ids) == [0, 1, 0, 0] and trace.keys[0] == decorator.cache_key(BODY).encode()
    output = decorator.__dict__["_model"].predict(decorator._prepare_input(BODY))
    assert trace.value_bytes == len(decorator.__dict__["_codec"].encode(decorator._output_values(output)))
    assert trace.model_latency_seconds > 0


@pytest.mark.parametrize("line, message", [("not json", "requests.jsonl:2: not a JSON value"),
                                           ("[1, 2]", "requests.jsonl:2: a request body is a JSON object, got list"),
                                           (json.dumps({**BODY, "height": 3}), "requests.jsonl:2: unknown field(s) height"),
                                           (json.dumps({**BODY, "age": "old"}), "requests.jsonl:2: not a valid input: age")])
def test_bad_request_files_name_the_line(decorator, tmp_path, line, message):
    from cachedmodel.advise.offline import read_requests
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps(BODY) + "\n" + line + "\n")
    with pytest.raises(traces.TraceError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        read_requests(path, decorator)


def test_a_missing_advise_extra_is_named_with_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert cli.main(["--zipf", "1", "--distinct", "10", "--requests", "10", "--out", str(tmp_path)]) == 3
    assert "pip install 'cachedmodel[advise]'" in capsys.readouterr().err
