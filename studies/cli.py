"""What the command lines (``run.py``, ``python -m studies.*``, ``python -m costmodels.paper``) share: output
paths checked before any work starts, and the errors a user can cause that print as one line (status 2)."""
from __future__ import annotations

import os
from pathlib import Path

#: file types matplotlib writes that the commands accept for a plot
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def check_output_path(path, flag: str, suffixes: tuple[str, ...] | None = None) -> str | None:
    """Why ``path`` cannot take an output file (a message naming ``flag``), or None when it can: not a
    directory, in a directory that exists and is writable, and (with ``suffixes``) with one of those suffixes,
    so a tool never quietly writes somewhere else (matplotlib adds ``.png`` to a name without one)."""
    p = Path(path)
    if p.is_dir():
        example = p / f"out{suffixes[0] if suffixes else ''}"
        return f"{flag} {str(path)!r} is a directory; give a file path such as {str(example)!r}"
    if suffixes and p.suffix.lower() not in suffixes:
        return (f"{flag} {str(path)!r} must end in {', '.join(suffixes)} "
                f"(got {p.suffix!r})" if p.suffix else f"{flag} {str(path)!r} has no file suffix; "
                f"give one of {', '.join(suffixes)}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return f"{flag} {str(path)!r}: directory {str(parent)!r} does not exist"
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        return f"{flag} {str(path)!r} is not writable"
    return None


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean bad input or a missing or damaged local artefact, not a bug: printed as one
    line with exit status 2 (anything else is a bug and keeps its traceback)."""
    from mapping.capture import CaptureError
    from studies.store import StoreError
    from vsquant.quantize import ScaleRangeError
    from vsquant.vector_mac import AccumulatorOverflow
    from workloads.digits import DigitsWeightsError
    from workloads.pretrained import CheckpointError, ModelNotAvailable
    return (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
            NotImplementedError, ImportError, ModelNotAvailable, CheckpointError, DigitsWeightsError,
            StoreError, ScaleRangeError, AccumulatorOverflow, CaptureError)


def one_line(e: BaseException) -> str:
    """``Type: first line`` of an exception's message."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
