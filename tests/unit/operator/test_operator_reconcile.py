"""Which existing objects a reconcile may take over (pure decision of reconcile.foreign_controller)."""
import pytest

from cachedmodel_operator import builders
from cachedmodel_operator.reconcile import ChildConflict, Memory, check_free, ensure_secret, foreign_controller
from operator_samples import cached_model


def with_owner(**ref) -> dict:
    obj = builders.model_service(cached_model())
    obj["metadata"]["ownerReferences"] = [ref]
    return obj


def test_own_children_and_unowned_objects_are_free():
    cm = cached_model()
    assert foreign_controller(None, cm) is None
    assert foreign_controller(builders.model_service(cm), cm) is None  # owned by this CachedModel (uid)
    unowned = builders.model_service(cm)
    del unowned["metadata"]["ownerReferences"]
    assert foreign_controller(unowned, cm) is None
    assert foreign_controller(with_owner(kind="ConfigMap", name="x", uid="u1"), cm) is None, "not a controller"


def test_children_of_an_earlier_cachedmodel_of_the_same_name_are_free():
    """Deleted and re-created: the garbage collector has not removed the old children yet; take them over."""
    cm = cached_model()
    old = with_owner(apiVersion="cachedmodel.dev/v1alpha1", kind="CachedModel", name=cm.name, uid="old-uid",
                     controller=True)
    assert foreign_controller(old, cm) is None


def test_an_object_another_controller_runs_is_refused_naming_it():
    cm = cached_model()
    foreign = with_owner(apiVersion="apps/v1", kind="Deployment", name="someone", uid="u2", controller=True)
    assert foreign_controller(foreign, cm)["name"] == "someone"
    other_model = with_owner(apiVersion="cachedmodel.dev/v1alpha1", kind="CachedModel", name="other", uid="u3",
                             controller=True)
    assert foreign_controller(other_model, cm)["name"] == "other"
    memory = Memory()
    with pytest.raises(ChildConflict, match="Service ml/insurance-charges .* controlled by Deployment someone"):
        check_free(None, cm, "Service", "insurance-charges", memory, live=foreign)
    assert ("Service", "insurance-charges") not in memory.checked
    check_free(None, cm, "Service", "insurance-charges", memory, live=None)  # absent: free, remembered
    assert ("Service", "insurance-charges") in memory.checked


class SecretStore:
    """The Secret calls ensure_secret makes, against one stored object (a fake of Kube, recording deletes)."""

    def __init__(self, live: dict | None):
        self.live, self.deleted, self.created = live, [], []

    def get(self, kind, namespace, name):
        return self.live

    def delete(self, kind, namespace, name, owner_uid=None, uid=None):
        self.deleted.append((kind, name, uid))
        self.live = None
        return True

    def create(self, obj):
        self.created.append(obj)
        self.live = {**obj, "metadata": {**obj["metadata"], "uid": "new-uid"}, "data": {"password": "cHc="}}
        return self.live


def secret(owner_refs=None, data=None, labels=None) -> dict:
    cm = cached_model()
    obj = builders.password_secret(cm, "pw")
    obj["metadata"].update(uid="old-uid", labels=labels or {})
    obj["metadata"]["ownerReferences"] = owner_refs or []
    obj.pop("stringData")
    obj["data"] = data or {}
    return obj


def test_our_secret_that_lost_its_key_is_replaced():
    cm = cached_model()
    store = SecretStore(secret([{"apiVersion": "cachedmodel.dev/v1alpha1", "kind": "CachedModel", "name": cm.name,
                                 "uid": cm.uid, "controller": True}], data={"other": "eA=="}))
    assert ensure_secret(store, cm, Memory()) == "new-uid"
    assert store.deleted == [("Secret", cm.redis_secret_name, "old-uid")], "deleted with a uid precondition"


@pytest.mark.parametrize("refs", [
    [],  # the user's own Secret of that name
    [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u9"}],  # owned, not controlled, by another
    [{"apiVersion": "cachedmodel.dev/v1alpha1", "kind": "CachedModel", "name": "insurance-charges",
      "uid": "0d2c8a4e-uid"}],  # a plain (non-controller) reference is not control
], ids=["unowned", "other-owner", "not-controller"])
def test_a_secret_we_do_not_own_is_never_deleted(refs):
    """Even with our labels on it (copied, or left by --cascade=orphan): refuse, naming the way out."""
    cm = cached_model()
    store = SecretStore(secret(refs, data={"token": "eA=="}, labels=cm.labels("redis", "redis")))
    with pytest.raises(ChildConflict, match=r"Secret ml/insurance-charges-redis-auth .* not owned by this CachedModel"):
        ensure_secret(store, cm, Memory())
    assert store.deleted == [] and store.created == []


def test_an_existing_secret_with_the_key_is_used_as_it_is():
    cm = cached_model()
    store = SecretStore(secret(data={"password": "cHc="}))
    assert ensure_secret(store, cm, Memory()) == "old-uid"
    assert store.deleted == [] and store.created == []
