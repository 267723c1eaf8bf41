"""The model's HorizontalPodAutoscaler (spec.model.autoscaling): autoscaling/v2, targeting the CachedModel
itself through its scale subresource, so the HPA moves spec.model.replicas and the operator carries that
into the Deployment as it carries any spec (it never resets what the HPA set)."""
from __future__ import annotations

import copy

from cachedmodel_operator import schema
from cachedmodel_operator.builders.model import APP, COMPONENT
from cachedmodel_operator.resource import CachedModel


def model_autoscaler(cm: CachedModel) -> dict | None:
    """The HPA of spec.model.autoscaling, or None when the CachedModel does not autoscale."""
    autoscaling = cm.model.get("autoscaling")
    if not autoscaling:
        return None
    spec = {
        "scaleTargetRef": {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "name": cm.name},
        "minReplicas": autoscaling.get("minReplicas", 1),
        "maxReplicas": autoscaling["maxReplicas"],
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": autoscaling.get("targetCPUUtilizationPercentage", 80)}}}],
    }
    if autoscaling.get("behavior"):
        spec["behavior"] = copy.deepcopy(autoscaling["behavior"])
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": cm.metadata(cm.model_name, COMPONENT, APP),
        "spec": spec,
    }


def selector_text(cm: CachedModel) -> str:
    """The model pods' label selector as a string: status.selector, the scale subresource's labelSelectorPath."""
    return ",".join(f"{key}={value}" for key, value in sorted(cm.selector_labels(COMPONENT, APP).items()))
