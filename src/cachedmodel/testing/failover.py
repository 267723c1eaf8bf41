"""Failover under load: the model service on a Sentinel or Cluster deployment while its primary dies or
its slots move, for integration tests and benchmarks.

Same load and result row as the fault matrix (`faults.Load`, `faults.check`): every answer compared
with the model's own, the slowest request, and the seconds from the event to hits on every body
again. The event's time is the mark: for a kill that is the moment the primary died, so `all_hits_s`
includes Sentinel's or the cluster's own failover time.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from cachedmodel.testing import faults
from cachedmodel.testing.model_service import EXAMPLE_CONFIG, ModelService
from cachedmodel.testing.processes import wait_until
from cachedmodel.testing.redis_topologies import ClusterDeployment, SentinelDeployment

PASSWORD = "failover-test-password"


def topology_config(directory: Path, topology: dict) -> Path:
    """The example service config with the decorator pointed at `topology` (sentinels / cluster_nodes
    options) instead of REDIS_URL; written into `directory`."""
    document = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    configuration = document["models"][0]["decorators"][0]["configuration"]
    configuration.pop("url", None)
    configuration.update(topology)
    path = Path(directory) / "rest_config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    mode: str                                   # sentinel | cluster
    event: Callable[[object], Callable[[], None]]  # deployment -> inject(); the mark is taken right after
    counted: tuple[str, ...] = ()               # error kinds that must show (proof the event bit)


def _kill_sentinel_primary(deployment: SentinelDeployment) -> Callable[[], None]:
    primary = deployment.primary()
    return primary.kill


def _kill_cluster_primary(deployment: ClusterDeployment) -> Callable[[], None]:
    return deployment.primaries()[0].kill


def _reshard(deployment: ClusterDeployment) -> Callable[[], None]:
    source, target = deployment.primaries()[:2]
    return lambda: deployment.reshard(source, target, 2000)


SCENARIOS = (
    Scenario("sentinel-kill-primary", "SIGKILL the primary; Sentinel (down-after 1 s) promotes the replica",
             "sentinel", _kill_sentinel_primary, counted=("connection",)),
    Scenario("cluster-kill-primary", "SIGKILL one of 3 primaries; its replica takes over (node timeout 1 s)",
             "cluster", _kill_cluster_primary, counted=("connection",)),
    Scenario("cluster-reshard", "move 2000 slots with their keys between primaries (MOVED/ASK)",
             "cluster", _reshard),
)
SCENARIOS_BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def deployment_for(mode: str):
    return SentinelDeployment(replicas=1, password=PASSWORD) if mode == "sentinel" else \
        ClusterDeployment(shards=3, replicas_per_shard=1, password=PASSWORD)


def decorator_topology(deployment) -> dict:
    if isinstance(deployment, SentinelDeployment):
        return {"sentinels": ",".join(deployment.sentinel_addresses), "sentinel_service": deployment.service,
                "sentinel_password": PASSWORD, "password": PASSWORD}
    return {"cluster_nodes": deployment.addresses, "password": PASSWORD}


def run_scenario(scenario: Scenario, recovery_bound_s: float = 15.0) -> dict:
    """One scenario on a fresh deployment and service; the fault matrix's result row plus `mode`."""
    bodies = faults.fault_bodies()
    expected = faults.expected_answers(bodies)
    with deployment_for(scenario.mode) as deployment, tempfile.TemporaryDirectory() as directory:
        service = ModelService(config=topology_config(Path(directory), decorator_topology(deployment)))
        load = None
        try:
            service.start()
            faults.warm_up(service, bodies)
            errors_before = faults.service_errors(service)
            load = faults.Load(service.url, bodies, expected,
                               max_seconds=faults.PRE_FAULT_S + recovery_bound_s + faults.POST_RECOVERY_S + 130)
            inject = scenario.event(deployment)
            load.start()
            time.sleep(faults.PRE_FAULT_S)  # steady hits before the event (a fixed phase, not a wait)
            started = time.monotonic()
            inject()  # a kill returns at once; a reshard returns when its slots have moved (under load)
            mark = load.mark_fault_end()
            ended = time.monotonic()
            recovered = True
            try:
                wait_until(load.all_hit_again, timeout=recovery_bound_s, interval=0.02,
                                  what=f"hits on every body after {scenario.name}")
            except TimeoutError:
                recovered = False
            time.sleep(faults.POST_RECOVERY_S)
            load.stop()
            errors_after = faults.service_errors(service)
            accounting = faults.cache_accounting(service)
            warnings = [line[:300] for line in service.logs().splitlines() if " WARNING cachedmodel" in line][:10]
        except BaseException:
            print(service.logs()[-5000:])
            raise
        finally:
            if load is not None:
                load.stop()
            service.cleanup()
    hit_times = sorted(load.first_hit_after_mark.values())
    # a kill is instantaneous: only an event that lasts (a reshard) has requests "during" it
    during = [hit for start, hit in load.responses_after_start if started <= start < ended] \
        if ended - started >= 0.1 else []
    latencies = sorted(load.latencies)
    counted = {kind: int(errors_after[kind] - errors_before[kind]) for kind in faults.ERROR_KINDS
               if errors_after[kind] - errors_before[kind]}
    return {
        "fault": scenario.name, "mode": scenario.mode, "description": scenario.description,
        "event_s": round(ended - started, 2),
        "requests": load.requests, "non_200": load.non_200, "wrong": load.wrong,
        "max_latency_ms": round(load.max_latency_s * 1000, 1),
        "p99_latency_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 1)
        if latencies else None,
        "hit_share_during_event": round(sum(during) / len(during), 3) if during else None,
        "hit_share_after": _hit_share_after(load, mark),
        "first_hit_s": round(hit_times[0] - mark, 2) if hit_times else None,
        "all_hits_s": round(hit_times[-1] - mark, 2) if recovered and hit_times else None,
        "errors_counted": counted, "expected_kinds": list(scenario.counted), "problems": load.problems,
        "cache_warnings": warnings, "accounting": accounting,
    }


def _hit_share_after(load: faults.Load, mark: float) -> float | None:
    after = [hit for start, hit in load.responses_after_start if start >= mark]
    return round(sum(after) / len(after), 3) if after else None
