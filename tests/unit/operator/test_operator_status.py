"""status from children's real state; lastTransitionTime only moves when a condition flips."""
from cachedmodel_operator.status import compute_status, merge_conditions, status_changed
from operator_samples import VARIANTS, cached_model


def deployment(ready, desired=2, updated=None, generation=1, observed=1):
    return {"metadata": {"generation": generation},
            "status": {"observedGeneration": observed, "replicas": desired, "readyReplicas": ready,
                       "updatedReplicas": desired if updated is None else updated}}


def statefulset(ready=1, current="r1", update="r1"):
    return {"metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "readyReplicas": ready, "currentRevision": current,
                       "updateRevision": update}}


def conditions(status):
    return {c["type"]: c for c in status["conditions"]}


def test_all_ready():
    status = compute_status(cached_model(), deployment(2), statefulset(), timestamp="T1")
    conds = conditions(status)
    assert [conds[t]["status"] for t in ("Ready", "ModelReady", "CacheReady")] == ["True"] * 3
    assert status["replicas"] == {"ready": 2, "desired": 2}
    assert status["url"] == "http://insurance-charges.ml.svc:8000"
    assert status["observedGeneration"] == 3
    assert status["redis"] == {"mode": "managed", "maxmemory": "256mb", "maxmemoryPolicy": "allkeys-lru",
                               "url": "redis://insurance-charges-redis.ml.svc:6379/0"}
    assert all(c["lastTransitionTime"] == "T1" for c in status["conditions"])


def test_model_not_ready():
    conds = conditions(compute_status(cached_model(), deployment(1), statefulset()))
    assert conds["ModelReady"]["status"] == "False" and conds["ModelReady"]["reason"] == "PodsNotReady"
    assert "1/2" in conds["ModelReady"]["message"]
    assert conds["Ready"]["status"] == "False"


def test_missing_children():
    conds = conditions(compute_status(cached_model(), None, None))
    assert conds["ModelReady"]["reason"] == "DeploymentMissing"
    assert conds["CacheReady"]["reason"] == "StatefulSetMissing"


def test_rollout_and_stale_generation():
    conds = conditions(compute_status(cached_model(), deployment(2, updated=1), statefulset()))
    assert conds["ModelReady"]["reason"] == "RollingOut"
    conds = conditions(compute_status(cached_model(), deployment(2, generation=2, observed=1), statefulset()))
    assert conds["ModelReady"]["reason"] == "Progressing"
    conds = conditions(compute_status(cached_model(), deployment(2), statefulset(current="a", update="b")))
    assert conds["CacheReady"]["reason"] == "RollingOut"


def test_redis_not_ready():
    conds = conditions(compute_status(cached_model(), deployment(2), statefulset(ready=0)))
    assert conds["CacheReady"]["status"] == "False" and conds["Ready"]["status"] == "False"


def test_external_and_disabled_cache_are_ready_without_statefulset():
    for name, reason in (("external", "ExternalRedis"), ("disabled", "CacheDisabled")):
        status = compute_status(cached_model(**VARIANTS[name]), deployment(2), None)
        conds = conditions(status)
        assert conds["CacheReady"]["reason"] == reason and conds["Ready"]["status"] == "True"
        assert status["redis"]["mode"] == name.split("-")[0]


def test_error_makes_ready_false():
    conds = conditions(compute_status(cached_model(), deployment(2), statefulset(), error="API 500: boom"))
    assert conds["Ready"] == {**conds["Ready"], "status": "False", "reason": "ReconcileError", "message": "API 500: boom"}


def test_transition_time_kept_until_status_flips():
    first = compute_status(cached_model(), deployment(1), statefulset(), timestamp="T1")
    same = compute_status(cached_model(), deployment(1), statefulset(), old_status=first, timestamp="T2")
    assert conditions(same)["Ready"]["lastTransitionTime"] == "T1"
    assert not status_changed(first, same)
    flipped = compute_status(cached_model(), deployment(2), statefulset(), old_status=same, timestamp="T3")
    assert conditions(flipped)["Ready"]["lastTransitionTime"] == "T3"
    assert conditions(flipped)["CacheReady"]["lastTransitionTime"] == "T1"
    assert status_changed(same, flipped)


def test_merge_conditions_new_type_gets_timestamp():
    merged = merge_conditions([], [{"type": "Ready", "status": "True"}], timestamp="T9")
    assert merged == [{"type": "Ready", "status": "True", "lastTransitionTime": "T9"}]


def test_external_url_in_status_has_no_credentials():
    cm = cached_model(redis={"external": {"url": "redis://user:hunter2@cache:6379/0"}})
    status = compute_status(cm, deployment(2), None)
    assert status["redis"]["url"] == "redis://cache:6379/0"
