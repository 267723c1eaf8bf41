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
