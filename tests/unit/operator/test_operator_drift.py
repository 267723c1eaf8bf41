"""Drift detection: server defaults are not drift; a lost or changed field is."""
import copy

from cachedmodel_operator import builders
from cachedmodel_operator.drift import contains, drifted
from operator_samples import cached_model


def live_version(obj):
    """What the API server returns: our fields plus defaults and bookkeeping."""
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="x", resourceVersion="7", generation=2)
    live["spec"]["progressDeadlineSeconds"] = 600
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["livenessProbe"]["successThreshold"] = 1
    live["status"] = {"readyReplicas": 1}
    return live


def test_defaults_are_not_drift():
    dep = builders.model_deployment(cached_model(), "c")
    assert not drifted(live_version(dep), dep)


def test_changed_or_lost_fields_are_drift():
    dep = builders.model_deployment(cached_model(), "c")
    edited = live_version(dep)
    edited["spec"]["replicas"] = 5
    assert drifted(edited, dep)
    edited = live_version(dep)
    del edited["spec"]["template"]["metadata"]["annotations"]
    assert drifted(edited, dep)
    edited = live_version(dep)
    edited["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    assert drifted(edited, dep)


def test_numbers_match_their_string_form_and_bools_do_not():
    assert contains({"a": "1"}, {"a": 1})
    assert not contains({"a": 1}, {"a": True})


def test_secret_string_data_is_ignored():
    secret = builders.password_secret(cached_model(), "pw")
    live = {**copy.deepcopy(secret), "data": {"password": "cHc="}}
    del live["stringData"]
    assert not drifted(live, secret)


def with_resources(resources: dict):
    return builders.model_deployment(cached_model(model={"resources": resources}), "c")


def canonical(dep, resources: dict):
    """The live Deployment as the API server stores it: quantities in canonical form."""
    live = live_version(dep)
    live["spec"]["template"]["spec"]["containers"][0]["resources"] = resources
    return live


def test_quantities_in_canonical_form_are_not_drift():
    """The API server rewrites 1000m as 1, 1024Mi as 1Gi, 0.5 as 500m: a re-apply would change nothing."""
    dep = with_resources({"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": 0.5, "memory": "1Gi"}})
    live = canonical(dep, {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}})
    assert not drifted(live, dep)


def test_a_changed_quantity_is_drift():
    dep = with_resources({"requests": {"cpu": "1000m", "memory": "1024Mi"}})
    assert drifted(canonical(dep, {"requests": {"cpu": "2", "memory": "1Gi"}}), dep)
    assert drifted(canonical(dep, {"requests": {"cpu": "1", "memory": "1G"}}), dep)  # 10^9 is not 2^30
    assert drifted(canonical(dep, {"requests": {"cpu": "1"}}), dep)


def test_volume_sizes_compare_as_quantities():
    sts = builders.redis_statefulset(cached_model(redis={"persistence": {"enabled": True, "size": "2048Mi"}}), "c")
    live = copy.deepcopy(sts)
    live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert not drifted(live, sts)
    live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "3Gi"
    assert drifted(live, sts)


def test_quantity_look_alikes_elsewhere_stay_strings():
    """An env var or a ConfigMap value of `1000m` is text the program reads: `1` is a different value."""
    assert not contains({"env": [{"name": "X", "value": "1"}]}, {"env": [{"name": "X", "value": "1000m"}]})
    assert not contains({"data": {"size": "1Gi"}}, {"data": {"size": "1024Mi"}})
