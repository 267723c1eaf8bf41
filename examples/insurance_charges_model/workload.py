"""Realistic request bodies for the demo and benchmarks (pure, seeded): random people, with a share of repeats.

Values follow the data set's ranges; BMI has two decimals like the data, so new inputs are almost
never accidental repeats and the hit ratio is the one asked for.
"""
from __future__ import annotations

import random

from insurance_charges_model.features import REGIONS


def random_person(rng: random.Random) -> dict:
    return {"age": rng.randint(18, 65), "sex": rng.choice(("male", "female")),
            "bmi": round(rng.uniform(16.0, 48.0), 2), "children": rng.choice((0, 0, 0, 1, 1, 2, 2, 3, 4, 5)),
            "smoker": rng.random() < 0.2, "region": rng.choice(REGIONS)}


def workload(count: int, repeat_share: float = 0.5, seed: int = 7) -> list[dict]:
    """`count` bodies; each is, with probability `repeat_share`, a copy of an earlier one (the first never)."""
    if not 0.0 <= repeat_share < 1.0:
        raise ValueError(f"repeat_share must be in [0, 1), got {repeat_share}")
    rng = random.Random(seed)
    bodies: list[dict] = []
    for _ in range(count):
        if bodies and rng.random() < repeat_share:
            bodies.append(dict(rng.choice(bodies)))
        else:
            bodies.append(random_person(rng))
    return bodies
