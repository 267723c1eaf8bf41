"""e2e tier (each module sets pytestmark = e2e): the real-traffic ones (needs_real_pods) are skipped with the
reason printed unless CACHEDMODEL_REAL_PODS=1 says the cluster really runs containers (kind)."""
from pathlib import Path

import pytest

from tests.e2e.helpers import REAL_PODS, REAL_PODS_REASON

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE not in Path(item.path).parents:
            continue
        if item.get_closest_marker("needs_real_pods") and not REAL_PODS:
            item.add_marker(pytest.mark.skip(reason=REAL_PODS_REASON))
