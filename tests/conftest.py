"""Test-suite hygiene: each test module starts without the process caches the previous ones filled.

The library caches loaded workloads, captured graphs and recorded calibration inputs per process
(``functools.cache`` on e.g. :func:`studies.ptq.load_workload`), which a user's process wants. A test
run imports every workload in turn, so without this the suite's peak memory is the sum of every
module's models rather than the largest one's.
"""
from __future__ import annotations

import sys

import pytest

from _models import release_memory

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
