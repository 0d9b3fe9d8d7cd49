"""What the command lines (``run.py``, ``python -m studies.*``, ``python -m studies.paper``) share: output
paths checked before any work starts, progress on stderr, and the errors a user can cause that print as one
line (status 2)."""
from __future__ import annotations

import os
import sys
import time
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


class Progress:
    """Progress of ``total`` steps on stderr: a tqdm bar on a terminal, else one line when a stage starts and at
    most one line per ``every`` seconds of steps (and the last), so a log shows a long wait is not a hang.
    Call it with ``(done, total)`` (the runners' callback) and :meth:`stage` with a name; :meth:`close` at the end."""

    def __init__(self, desc: str, total: int, *, unit: str = "point", every: float = 10.0, file=None):
        from tqdm import tqdm
        self.desc, self.total, self.unit, self.every = desc, total, unit, every
        self.file = file or sys.stderr
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, disable=None, leave=False)
        self.t0 = self.last = time.perf_counter()
        self.done = 0

    def stage(self, name: str) -> None:
        if self.bar.disable:
            self._line(name)
        else:
            self.bar.set_description(f"{self.desc}: {name}")

    def __call__(self, done: int, total: int | None = None) -> None:
        self.bar.update(done - self.done)
        self.done = done
        now = time.perf_counter()
        if self.bar.disable and (now - self.last >= self.every or done == (total or self.total)):
            self._line(f"{done} of {total or self.total} {self.unit}s")
            self.last = now

    def _line(self, what: str) -> None:
        print(f"{self.desc}: {what} ({time.perf_counter() - self.t0:.0f} s)", file=self.file, flush=True)

    def close(self) -> None:
        self.bar.close()


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean bad input or a missing or damaged local artefact, not a bug: printed as one
    line with exit status 2 (anything else is a bug and keeps its traceback)."""
    from mapping.capture import CaptureError
    from studies.store import StoreError
    from vsquant.quantize import ScaleRangeError
    from vsquant.vector_mac import AccumulatorOverflow
    from workloads.digits import DigitsWeightsError
    from workloads.layer_specs import LayerTooLarge
    from workloads.pretrained import CheckpointError, ModelNotAvailable
    return (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
            NotImplementedError, ImportError, ModelNotAvailable, CheckpointError, DigitsWeightsError,
            StoreError, ScaleRangeError, AccumulatorOverflow, CaptureError, LayerTooLarge)


def one_line(e: BaseException) -> str:
    """``Type: first line`` of an exception's message."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
