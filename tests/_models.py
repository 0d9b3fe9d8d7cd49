"""The real-weight test policy: a test whose trained weights (or images) are not installed skips,
unless ``VSQSIM_REQUIRE_MODELS=1`` (set by ``.ci/run``), which makes it fail instead."""
import ctypes
import gc
import os

import pytest


def need_model(load, *args, errors=None, **kwargs):
    """``load(*args, **kwargs)``, or skip (fail under ``VSQSIM_REQUIRE_MODELS=1``) when it raises
    ``errors`` (default :class:`workloads.pretrained.ModelNotAvailable`, which ImagesNotAvailable is)."""
    from workloads.pretrained import ModelNotAvailable
    expected = errors or ModelNotAvailable
    try:
        return load(*args, **kwargs)
    except expected as e:
        if os.environ.get("VSQSIM_REQUIRE_MODELS") == "1":
            pytest.fail(f"VSQSIM_REQUIRE_MODELS=1 but a model is not available: {e}")
        pytest.skip(str(e))


def release_memory() -> None:
    """Collect garbage and hand glibc's freed arenas back to the system, so the next test starts low."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
