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


def pytest_runtest_logreport(report):
    # CUDADENT42_INSTAFAIL=1 (the GPU-machine scripts): print each failure as
    # it happens, so a call cut off by its time limit still says what failed.
    if report.failed and os.environ.get("CUDADENT42_INSTAFAIL"):
        sys.__stderr__.write(f"\nFAILED {report.nodeid} ({report.when})\n{report.longreprtext[-4000:]}\n")
        sys.__stderr__.flush()
