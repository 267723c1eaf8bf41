"""Which existing objects a reconcile may take over (pure decision of reconcile.foreign_controller), and what
it does with a password Secret of its name (reconcile.secret_source: bring your own password)."""
import base64

import pytest

from cachedmodel_operator import builders
from cachedmodel_operator.reconcile import (CREATE, KEEP, PROVIDED, PROVIDED_REASON, REPLACE, ChildConflict, Memory,
                                            check_free, ensure_secret, foreign_controller, secret_source)
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
        self.live, self.deleted, self.created, self.events = live, [], [], []

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

    def warn(self, body, reason, message, event_type="Warning"):
        self.events.append((body["metadata"]["name"], event_type, reason, message))


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


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


OURS = [{"apiVersion": "cachedmodel.dev/v1alpha1", "kind": "CachedModel", "name": "insurance-charges",
         "uid": "0d2c8a4e-uid", "controller": True}]
SEALED = [{"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "name": "insurance-charges-redis-auth",
           "uid": "u5", "controller": True}]


@pytest.mark.parametrize("refs, data, expected", [
    (None, None, CREATE),
    (OURS, {"password": b64("generated")}, KEEP),
    (OURS, {"other": b64("x")}, REPLACE),
    (OURS, {"password": ""}, REPLACE),
    ([], {"password": b64("my-own-password")}, PROVIDED),  # made by hand (render --no-secret)
    (SEALED, {"password": b64("sealed+pw/=")}, PROVIDED),  # made by a secrets tool that controls it
], ids=["absent", "ours", "ours-lost-key", "ours-emptied", "by-hand", "controlled-by-a-secrets-tool"])
def test_what_is_done_with_a_password_secret_of_its_name(refs, data, expected):
    cm = cached_model()
    live = None if refs is None else secret(refs, data=data)
    assert secret_source(live, cm) == expected


@pytest.mark.parametrize("password, named", [
    ("", "empty"),
    ("from-a-file\n", "line break"),
    ('with"quote', "double quote"),
    ("back\\slash", "backslash"),
    ("nul\x00byte", "control character"),
])
def test_a_password_brought_by_the_user_that_redis_conf_cannot_hold_is_refused_naming_the_problem(password, named):
    """It goes into redis.conf in double quotes: refused with a clear condition, never rewritten (before, it was
    used as it was: Redis then failed to start, or took a config line from the password)."""
    cm = cached_model()
    store = SecretStore(secret([], data={"password": b64(password)}))
    with pytest.raises(ChildConflict, match=rf"Secret ml/insurance-charges-redis-auth is not owned .*{named}"):
        ensure_secret(store, cm, Memory())
    assert store.deleted == [] and store.created == []


def test_a_password_secret_controlled_by_a_secrets_tool_is_used_not_refused():
    """Sealed Secrets and External Secrets make the Secret with a controller reference to their own object:
    it is the user's password all the same (before, ChildConflict: 'controlled by SealedSecret ...')."""
    cm = cached_model()
    store = SecretStore(secret(SEALED, data={"password": b64("sealed-pw")}))
    assert ensure_secret(store, cm, Memory()) == "old-uid"
    assert store.deleted == [] and store.created == []


def test_a_password_brought_by_the_user_is_announced_once_per_secret():
    """A Normal event on the CachedModel says whose password Redis runs with; once per worker, and again for
    another Secret (deleted and made anew)."""
    cm = cached_model()
    store, memory = SecretStore(secret([], data={"password": b64("mine")})), Memory()
    assert ensure_secret(store, cm, memory) == "old-uid"
    assert ensure_secret(store, cm, memory) == "old-uid"
    assert len(store.events) == 1
    name, event_type, reason, message = store.events[0]
    assert (name, event_type, reason) == (cm.name, "Normal", PROVIDED_REASON)
    assert "insurance-charges-redis-auth" in message and "never rewritten or deleted" in message
    store.live["metadata"]["uid"] = "another-uid"
    assert ensure_secret(store, cm, memory) == "another-uid" and len(store.events) == 2
    assert store.deleted == [] and store.created == []


def test_a_secret_without_the_key_controlled_by_someone_else_names_its_controller():
    cm = cached_model()
    store = SecretStore(secret(SEALED, data={"token": b64("x")}))
    with pytest.raises(ChildConflict, match=r"not owned by this CachedModel \(it is controlled by SealedSecret "):
        ensure_secret(store, cm, Memory())
