"""Leader election's pure parts: who may take the Lease when, and what is written (cachedmodel_operator.leader)."""
import pytest

from cachedmodel_operator import settings
from cachedmodel_operator.leader import decide, lease_body

NOW = 1_800_000_000.0


def lease(holder: str, renewed_ago: float, duration: int = 15) -> dict:
    body = lease_body("cachedmodel-operator", "ops", holder, NOW - renewed_ago, duration, None)
    body["metadata"]["resourceVersion"] = "7"
    return body


def test_no_lease_is_created_ours_is_renewed_a_valid_one_of_another_waits():
    assert decide(None, "a", NOW) == "create"
    assert decide(lease("a", 1), "a", NOW) == "renew"
    assert decide(lease("b", 14.9), "a", NOW) == "wait"


def test_an_expired_or_released_lease_is_taken():
    assert decide(lease("b", 15), "a", NOW) == "take", "not renewed for its whole duration"
    released = lease_body("cachedmodel-operator", "ops", "b", NOW - 1, 15, lease("b", 1), release=True)
    assert released["spec"]["holderIdentity"] == ""
    assert decide(released, "a", NOW) == "take", "a released Lease is free at once"


def test_a_take_over_counts_a_transition_and_keeps_the_resource_version():
    old = lease("b", 30)
    taken = lease_body("cachedmodel-operator", "ops", "a", NOW, 15, old)
    assert taken["spec"]["holderIdentity"] == "a" and taken["spec"]["leaseTransitions"] == 1
    assert taken["metadata"]["resourceVersion"] == "7", "optimistic concurrency: a racing writer gets a 409"
    assert taken["spec"]["acquireTime"] == taken["spec"]["renewTime"]
    renewed = lease_body("cachedmodel-operator", "ops", "a", NOW + 2, 15, {**taken, "metadata": {
        **taken["metadata"], "resourceVersion": "8"}})
    assert renewed["spec"]["acquireTime"] == taken["spec"]["acquireTime"] and renewed["spec"]["leaseTransitions"] == 1
    assert renewed["spec"]["renewTime"] > taken["spec"]["renewTime"]


@pytest.mark.parametrize("env, variable", [
    ({"CACHEDMODEL_LEADER_ELECTION": "op"}, "POD_NAMESPACE"),
    ({"CACHEDMODEL_LEADER_ELECTION": "Not A Name", "POD_NAMESPACE": "ops"}, "CACHEDMODEL_LEADER_ELECTION"),
    ({"CACHEDMODEL_LEADER_ELECTION": "op", "POD_NAMESPACE": "ops", "CACHEDMODEL_LEASE_SECONDS": "2"},
     "CACHEDMODEL_LEASE_SECONDS"),
    ({"CACHEDMODEL_LEADER_ELECTION": "op", "POD_NAMESPACE": "ops", "CACHEDMODEL_LEASE_SECONDS": "soon"},
     "CACHEDMODEL_LEASE_SECONDS"),
])
def test_bad_leader_election_settings_name_the_variable(env, variable):
    with pytest.raises(settings.SettingsError, match=variable):
        settings.from_env(env)


def test_leader_election_is_off_unless_a_lease_is_named():
    assert settings.from_env({}).lease_name is None
    config = settings.from_env({"CACHEDMODEL_LEADER_ELECTION": "cm-op", "POD_NAMESPACE": "ops"})
    assert (config.lease_name, config.lease_namespace, config.lease_seconds) == ("cm-op", "ops", 15.0)
