"""Test-suite hygiene: each test module starts without the process caches the previous ones filled.

The library caches loaded workloads, captured graphs and recorded calibration inputs per process
(``functools.cache`` on e.g. :func:`studies.ptq.load_workload`), which a user's process wants. A test
run imports every workload in turn, so without this the suite's peak memory is the sum of every
module's models rather than the largest one's.

The persistent cache of timing-only runs (``studies.cache``) is off for the suite (``VSQSIM_NO_CACHE``, also in
the commands tests start), so a test's run never comes from an earlier test's; ``tests/test_cache.py`` turns it
on in a temporary directory.
"""
from __future__ import annotations

import os
import sys

import pytest

from _models import release_memory

os.environ["VSQSIM_NO_CACHE"] = "1"

PACKAGES = ("vsquant", "tlm", "mapping", "workloads", "costmodels", "studies")


def clear_process_caches() -> int:
    """Clear every ``functools`` cache defined in the project's packages; return how many were cleared."""
    cleared = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in PACKAGES:
            continue
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name:
                value.cache_clear()
                cleared += 1
    return cleared


@pytest.fixture(autouse=True, scope="module")
def _fresh_process_caches():
    yield
    clear_process_caches()
    release_memory()
