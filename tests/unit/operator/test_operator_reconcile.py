"""Which existing objects a reconcile may take over (pure decision of reconcile.foreign_controller)."""
import pytest

from cachedmodel_operator import builders
from cachedmodel_operator.reconcile import ChildConflict, Memory, check_free, foreign_controller
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
