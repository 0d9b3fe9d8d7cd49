"""The real-weight test policy: a test whose trained weights (or images) are not installed skips,
unless ``VSQSIM_REQUIRE_MODELS=1`` (set by ``.ci/run``), which makes it fail instead."""
import os

import pytest


def need_model(load, *args, errors=None, **kwargs):
    """``load(*args, **kwargs)``, or skip (fail under ``VSQSIM_REQUIRE_MODELS=1``) when it raises
    ``errors`` (default :class:`workloads.pretrained.ModelNotAvailable`, which ImagesNotAvailable is)."""
    from workloads.pretrained import ModelNotAvailable
    try:
        return load(*args, **kwargs)
    except errors or ModelNotAvailable as e:
        if os.environ.get("VSQSIM_REQUIRE_MODELS") == "1":
            pytest.fail(f"VSQSIM_REQUIRE_MODELS=1 but a model is not available: {e}")
        pytest.skip(str(e))
