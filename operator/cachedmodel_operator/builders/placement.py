"""Where pods may run, from a CachedModel section (spec.model or spec.redis): the core/v1 pod fields that
a user sets and the operator copies as they are (the schema already checked their shapes)."""
from __future__ import annotations

import copy

PLACEMENT_FIELDS = ("nodeSelector", "tolerations", "affinity", "priorityClassName")


def pod_placement(section: dict, selector: dict[str, str] | None = None) -> dict:
    """The pod spec fields of `section` that say where its pods run (deep copies: manifests never share
    objects). A topology spread constraint without labelSelector spreads the pods of `selector`."""
    fields = {name: copy.deepcopy(section[name]) for name in PLACEMENT_FIELDS if section.get(name)}
    constraints = copy.deepcopy(section.get("topologySpreadConstraints") or [])
    for constraint in constraints:
        if "labelSelector" not in constraint and selector:
            constraint["labelSelector"] = {"matchLabels": dict(selector)}
    if constraints:
        fields["topologySpreadConstraints"] = constraints
    return fields
