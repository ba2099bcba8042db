import os
import sys

import pytest

# Tests run against the source tree even before `pip install -e .`.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))


def _hopper() -> bool:
    try:
        from cudadent42.runtime import hopper_available

        return hopper_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _hopper():
        return
    skip = pytest.mark.skip(reason="needs an sm_90 (Hopper) GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
