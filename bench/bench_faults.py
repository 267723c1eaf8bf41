"""Redis fault matrix benchmark: the model service under HTTP load while Redis fails in 8 ways.

One `python -m cachedmodel.service` (the example config, the real model); per fault a fresh
redis-server on the port its REDIS_URL names. 4 client threads (keep-alive httpx) send 50 distinct
bodies in a loop; every 200 answer is compared with the model's own answer, computed in-process.
Per fault: requests, non-200 answers, wrong answers, slowest and p99 request, the share of hits while
the fault lasted, seconds from the fault's end to the first hit and to hits on every body, and the
cache errors the service counted. Targets: 0 non-200, 0 wrong, every body hit again within 30 s,
no request over 5 s. The same runs are the integration test tests/integration/test_fault_matrix.py
(cachedmodel.testing.faults). Writes bench/results/faults.{json,md}. Bounded: about 1.5 minutes.
"""
from __future__ import annotations

import time

from bench.common import markdown_table, write_results
from cachedmodel.testing import faults
from cachedmodel.testing.model_service import MODEL_FILES_HINT, artifact_missing

NAME = "faults"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> dict:
    if artifact_missing():
        raise RuntimeError(MODEL_FILES_HINT)
    started = time.monotonic()
    results = faults.run_matrix(progress=lambda row: print(
        f"  {row['fault']}: {row['requests']} requests, {row['non_200']} non-200, {row['wrong']} wrong, "
        f"max {row['max_latency_ms']} ms, hits again after {row['first_hit_s']} s", flush=True))
    elapsed = time.monotonic() - started
    verdicts = {row["fault"]: faults.check(row) for row in results}
    rows = [[f"{row['fault']}", row["description"], row["requests"], row["non_200"], row["wrong"],
             f"{row['max_latency_ms']:.0f}", f"{row['p99_latency_ms']:.0f}",
             "-" if row["hit_share_during_fault"] is None else f"{row['hit_share_during_fault']:.0%}",
             _seconds(row["first_hit_s"]), _seconds(row["all_hits_s"]),
             ", ".join(f"{kind} {count}" for kind, count in sorted(row["errors_counted"].items())) or "none",
             "PASS" if not verdicts[row["fault"]] else "FAIL"] for row in results]
    totals = {"requests": sum(row["requests"] for row in results),
              "non_200": sum(row["non_200"] for row in results), "wrong": sum(row["wrong"] for row in results),
              "max_latency_ms": max(row["max_latency_ms"] for row in results)}
    passed = all(not failures for failures in verdicts.values())
    markdown = (
        f"One model service (example config, real model, socket timeouts 0.25 s, circuit breaker 3 failures / "
        f"5 s), a fresh redis-server per fault on the port its `REDIS_URL` names; {faults.CLIENTS} client "
        f"threads send {faults.BODY_COUNT} distinct bodies in a loop for {faults.PRE_FAULT_S:g} s before the "
        f"fault, through it, and until every body was answered `x-cache: hit` again by a request started after "
        f"the fault ended (+{faults.POST_RECOVERY_S:g} s). Every 200 answer is compared with the model's own "
        f"answer computed in-process. \"hits during\" is the share of hits among requests started while the "
        f"fault lasted; \"first hit\" / \"all hit\" are seconds from the fault's end (the recovering command "
        f"done) to the first hit and to hits on every body; \"counted\" is what the service's "
        f"`cachedmodel_cache_errors_total` added.\n\n"
        + markdown_table(["fault", "what Redis does", "requests", "non-200", "wrong", "max ms", "p99 ms",
                          "hits during", "first hit s", "all hit s", "counted", "verdict"], rows)
        + f"\n\n{totals['requests']} requests in all: **{totals['non_200']} non-200, {totals['wrong']} wrong**, "
        f"slowest {totals['max_latency_ms']:.0f} ms (targets: 0, 0, every body hit again within "
        f"{faults.RECOVERY_BOUND_S:g} s, no request over {faults.LATENCY_BOUND_S:g} s: "
        f"{'met' if passed else 'NOT met'}). Run time {elapsed:.0f} s.\n")
    data = {"config": {"clients": faults.CLIENTS, "bodies": faults.BODY_COUNT, "pre_fault_s": faults.PRE_FAULT_S,
                       "post_recovery_s": faults.POST_RECOVERY_S, "recovery_bound_s": faults.RECOVERY_BOUND_S,
                       "latency_bound_s": faults.LATENCY_BOUND_S},
            "faults": results, "totals": totals, "verdicts": verdicts, "targets_met": passed,
            "run_time_s": round(elapsed, 1)}
    write_results(NAME, data, markdown)
    print(markdown)
    if not passed:
        raise RuntimeError(f"fault matrix targets not met: { {k: v for k, v in verdicts.items() if v} }")
    return data


if __name__ == "__main__":
    main()
