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
    assert status["replicas"] == {"ready": 2, "desired": 2, "current": 2}
    assert status["selector"] == ("app.kubernetes.io/component=model,app.kubernetes.io/instance=insurance-charges,"
                                  "app.kubernetes.io/name=model-service")
    assert status["url"] == "http://insurance-charges.ml.svc:8000"
    assert status["observedGeneration"] == 3
    assert status["redis"] == {"source": "managed", "mode": "standalone", "maxmemory": "256mb",
                               "maxmemoryPolicy": "allkeys-lru", "readyNodes": 1, "desiredNodes": 1, "nodes": "1/1",
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
        assert status["redis"]["source"] == name
        assert status["redis"].get("mode") == ("standalone" if name == "external" else None)


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


# ------------------------------------------------------------------ why pods are not ready

from cachedmodel_operator.status import (last_words, needs_pods, pod_warnings, pods_problem,  # noqa: E402
                                         remember_warnings)

BAD_FIELD = ("option 'hashing_fields': 'agee' is not an input field of model insurance_charges_model "
             "(input fields: age, sex, bmi, children, smoker, region)")
TRACEBACK_LOG = f"""2026-11-25 00:24:08,538 ERROR rest_model_service.helpers: Exception raised in service initialization.
Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/ml_base/utilities/model_manager.py", line 192, in add_decorator
    decorated_model = decorator.set_model(model)
  File "/opt/venv/lib/python3.11/site-packages/cachedmodel/decorator.py", line 86, in set_model
    raise ConfigurationError(f"option '{{option}}': '{{field}}' is not an input field of model "
cachedmodel.options.ConfigurationError: {BAD_FIELD}
INFO:     Shutting down
INFO:     Waiting for application shutdown.
INFO:     Finished server process [7]
"""


def pod(name="ic-7d9f-abcde", created="2026-11-25T00:00:00Z", phase="Running", containers=(), conditions=(),
        deleting=False, **status):
    meta = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T00:05:00Z"
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": list(containers),
                                         "conditions": list(conditions), **status}}


def running(ready=True, restarts=0, last=None):
    return {"name": "model", "ready": ready, "restartCount": restarts,
            "state": {"running": {"startedAt": "2026-11-25T00:00:01Z"}},
            "lastState": {"terminated": last} if last else {}}


def waiting(reason, message=None, last=None, restarts=3):
    state = {"reason": reason}
    if message:
        state["message"] = message
    return {"name": "model", "ready": False, "restartCount": restarts, "state": {"waiting": state},
            "lastState": {"terminated": last} if last else {}}


def terminated(exit_code=1, reason="Error", message=None):
    out = {"exitCode": exit_code, "reason": reason}
    if message is not None:
        out["message"] = message
    return out


CRASH = pod(containers=[waiting("CrashLoopBackOff", "back-off 40s restarting failed container=model",
                                last=terminated(1, "Error", TRACEBACK_LOG))])


def test_crash_loop_reason_carries_the_decorators_error_from_the_log_tail():
    reason, message = pods_problem([CRASH])
    assert reason == "CrashLoopBackOff"
    assert message.startswith("pod ic-7d9f-abcde: container model: CrashLoopBackOff: back-off 40s")
    assert f"last termination: exit code 1 (Error): cachedmodel.options.ConfigurationError: {BAD_FIELD}" in message
    assert "Traceback" not in message and "Shutting down" not in message


def test_model_ready_condition_names_the_pod_problem():
    conds = conditions(compute_status(cached_model(), deployment(0), statefulset(), model_pods=[CRASH]))
    assert conds["ModelReady"]["reason"] == "CrashLoopBackOff"
    assert conds["ModelReady"]["message"].startswith("0/2 pods ready; pod ic-7d9f-abcde: container model:")
    assert "'agee' is not an input field" in conds["ModelReady"]["message"]
    assert conds["Ready"]["reason"] == "CrashLoopBackOff" and "agee" in conds["Ready"]["message"]
    # a rollout stuck on a crashing new pod (old pods still serve) says so too
    stuck = conditions(compute_status(cached_model(), deployment(2, updated=1), statefulset(), model_pods=[
        pod("ic-old-1", "2026-11-24T00:00:00Z", containers=[running()]), CRASH]))
    assert stuck["ModelReady"]["reason"] == "CrashLoopBackOff"
    assert stuck["ModelReady"]["message"].startswith("1/2 pods updated, 2 ready; pod ic-7d9f-abcde")


def test_image_pull_and_config_errors():
    pull = pod(phase="Pending", containers=[waiting("ImagePullBackOff", 'Back-off pulling image "nope:1"',
                                                    restarts=0)])
    assert pods_problem([pull]) == ("ImagePullBackOff",
                                    'pod ic-7d9f-abcde: container model: ImagePullBackOff: Back-off pulling image "nope:1"')
    err = pod(phase="Pending", containers=[waiting("ErrImagePull", "manifest unknown", restarts=0)])
    assert pods_problem([err])[0] == "ErrImagePull"
    config = pod(phase="Pending", containers=[waiting("CreateContainerConfigError",
                                                      'secret "cache-auth" not found', restarts=0)])
    assert pods_problem([config]) == ("CreateContainerConfigError", 'pod ic-7d9f-abcde: container model: '
                                      'CreateContainerConfigError: secret "cache-auth" not found')


def test_unschedulable_pod():
    pending = pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                "message": "0/3 nodes are available: 3 Insufficient memory."}])
    assert pods_problem([pending]) == ("Unschedulable", "pod ic-7d9f-abcde: not scheduled: 0/3 nodes are "
                                                        "available: 3 Insufficient memory.")
    conds = conditions(compute_status(cached_model(), deployment(2), statefulset(ready=0), redis_pods=[pending]))
    assert conds["CacheReady"]["reason"] == "Unschedulable"
    assert conds["CacheReady"]["message"].startswith("Redis pod is not ready; pod ic-7d9f-abcde: not scheduled")


def test_terminated_restarted_oom_and_evicted():
    failed = pod(containers=[{"name": "redis", "ready": False, "restartCount": 1,
                              "state": {"terminated": terminated(137, "OOMKilled")}}])
    assert pods_problem([failed]) == ("OOMKilled", "pod ic-7d9f-abcde: container redis terminated: "
                                                   "exit code 137 (OOMKilled)")
    error = pod(containers=[{"name": "model", "ready": False, "state": {"terminated": terminated(2, "Error", "boom")}}])
    assert pods_problem([error]) == ("ContainerFailed",
                                     "pod ic-7d9f-abcde: container model terminated: exit code 2 (Error): boom")
    restarted = pod(containers=[running(ready=False, restarts=4, last=terminated(1, "Error", "bad option"))])
    assert pods_problem([restarted]) == ("ContainerRestarted", "pod ic-7d9f-abcde: container model restarted 4 "
                                         "time(s), not ready; last termination: exit code 1 (Error): bad option")
    evicted = pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory.")
    assert pods_problem([evicted]) == ("Evicted", "pod ic-7d9f-abcde: failed: The node was low on resource: memory.")


def test_healthy_starting_deleted_or_no_pods_keep_the_generic_reason():
    starting = pod(phase="Pending", containers=[waiting("ContainerCreating", restarts=0)])
    completed = pod(containers=[running(ready=True, restarts=1, last=terminated(0, "Completed"))])
    not_ready = pod(containers=[running(ready=False)])
    gone = pod(deleting=True, containers=[waiting("CrashLoopBackOff", last=terminated(1))])
    for pods in ([], None, [starting], [completed], [not_ready], [gone]):
        assert pods_problem(pods) is None, pods
        conds = conditions(compute_status(cached_model(), deployment(1), statefulset(), model_pods=pods))
        assert conds["ModelReady"]["reason"] == "PodsNotReady"
    # pods are never consulted for a ready workload, nor asked for
    conds = conditions(compute_status(cached_model(), deployment(2), statefulset(), model_pods=[CRASH]))
    assert conds["ModelReady"]["reason"] == "PodsReady"
    assert needs_pods(cached_model(), deployment(2), statefulset()) == (False, False)
    assert needs_pods(cached_model(), deployment(1), statefulset(ready=0)) == (True, True)
    assert needs_pods(cached_model(), None, None) == (False, False)
    assert needs_pods(cached_model(**VARIANTS["external"]), deployment(2, updated=1), None) == (True, False)


def test_most_telling_problem_wins_and_ties_go_to_the_newest_pod():
    unschedulable = pod("ic-a", "2026-11-25T00:09:00Z", phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no nodes"}])
    pull_old = pod("ic-b", "2026-11-25T00:01:00Z", phase="Pending",
                   containers=[waiting("ImagePullBackOff", "old", restarts=0)])
    pull_new = pod("ic-c", "2026-11-25T00:02:00Z", phase="Pending",
                   containers=[waiting("ErrImagePull", "new", restarts=0)])
    assert pods_problem([unschedulable, pull_old, pull_new]) == (
        "ErrImagePull", "pod ic-c: container model: ErrImagePull: new")
    assert pods_problem([pull_new, pull_old, unschedulable]) == pods_problem([unschedulable, pull_old, pull_new])


def test_messages_are_bounded():
    long = pod(containers=[waiting("CrashLoopBackOff", "x" * 5000, last=terminated(1, "Error", "y" * 5000))])
    conds = conditions(compute_status(cached_model(), deployment(0), statefulset(), model_pods=[long]))
    message = conds["ModelReady"]["message"]
    assert len(message) <= 1024 and "x" * 300 not in message and "y" * 300 not in message and "…" in message
    assert last_words("z" * 400) == "z" * 299 + "…"
    assert last_words("first line\nsecond line\n") == "first line / second line"
    assert last_words("\n".join(f"line {i}" for i in range(200))).endswith("line 199")
    assert len(last_words("\n".join(f"line {i}" for i in range(200)))) <= 300
    assert last_words("Error: unknown flag --foo\nusage: ...") == "Error: unknown flag --foo"
    assert last_words(None) == "" and last_words(" \n ") == ""


def test_warning_only_when_the_pod_reason_is_new():
    cm = cached_model()
    generic = compute_status(cm, deployment(0), statefulset())
    crash = compute_status(cm, deployment(0), statefulset(), old_status=generic, model_pods=[CRASH])
    warned: dict = {}
    assert pod_warnings(None, generic, warned) == []
    events = pod_warnings(generic, crash, warned)
    assert [reason for reason, _ in events] == ["CrashLoopBackOff"]
    assert events[0][1].startswith("ModelReady: 0/2 pods ready; pod ic-7d9f-abcde") and "agee" in events[0][1]
    remember_warnings(warned, crash)
    again = compute_status(cm, deployment(0), statefulset(), old_status=crash, model_pods=[pod(containers=[
        waiting("CrashLoopBackOff", "back-off 1m20s restarting failed container=model", last=terminated(1))])])
    assert pod_warnings(crash, again, warned) == [], "same reason, new message: no event"
    # a crash loop cycles through a running-but-restarted state: each reason is reported once per episode
    restarted = compute_status(cm, deployment(0), statefulset(), old_status=again, model_pods=[
        pod(containers=[running(ready=False, restarts=5, last=terminated(1))])])
    assert [r for r, _ in pod_warnings(again, restarted, warned)] == ["ContainerRestarted"]
    remember_warnings(warned, restarted)
    back = compute_status(cm, deployment(0), statefulset(), old_status=restarted, model_pods=[CRASH])
    assert pod_warnings(restarted, back, warned) == []
    # once ready, the episode ends: the next crash loop is news again
    ready = compute_status(cm, deployment(2), statefulset(), old_status=back)
    remember_warnings(warned, ready)
    assert warned == {}
    assert [r for r, _ in pod_warnings(ready, back, warned)] == ["CrashLoopBackOff"]
