"""Turn records into the numeric feature matrix the regressor sees (pure; shared by training and serving).

Columns: age, bmi, children, sex is male, smoker, then one column per region (one-hot), so the
training code and the model's predict() can never disagree about the encoding.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

REGIONS = ("southwest", "southeast", "northwest", "northeast")
FEATURE_NAMES = ("age", "bmi", "children", "sex_male", "smoker") + tuple(f"region_{r}" for r in REGIONS)


def _text(value) -> str:
    """Enum members and plain strings both become their string value."""
    return getattr(value, "value", value)


def encode_record(record: Mapping) -> list[float]:
    """One record (age, sex, bmi, children, smoker, region) as a feature row."""
    region = _text(record["region"])
    if region not in REGIONS:
        raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
    return [float(record["age"]), float(record["bmi"]), float(record["children"]),
            1.0 if _text(record["sex"]) == "male" else 0.0, 1.0 if record["smoker"] else 0.0] + \
        [1.0 if region == name else 0.0 for name in REGIONS]


def encode(records: Iterable[Mapping]) -> np.ndarray:
    """Many records as a float64 matrix, one row each."""
    return np.array([encode_record(r) for r in records], dtype=np.float64).reshape(-1, len(FEATURE_NAMES))
