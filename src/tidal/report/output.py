"""Write a results folder all at once: build it next to its destination, then rename it into place.

A failure or Ctrl-C while writing leaves the destination as it was (absent, or the previous
results) — never half a report. Only a folder holding a previous comparison (it has the marker
file) is replaced, so a mistyped ``--out .`` cannot delete anything else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tidal.core.errors import TidalInputError

#: The file that marks a folder as tidal comparison output (safe to replace).
MARKER = "comparison.json"


def check_output_folder(out: Path, where: str = "--out") -> None:
    """Raise :class:`TidalInputError` unless ``out`` is absent, empty, or a previous comparison."""
    if not out.exists():
        return
    if not out.is_dir():
        raise TidalInputError(where, f"{out} exists and is not a folder")
    if any(out.iterdir()) and not (out / MARKER).is_file():
        raise TidalInputError(where, f"{out} is a non-empty folder that does not hold a previous comparison; "
                                     "choose a new or empty folder")


@contextmanager
def atomic_folder(out: str | Path, where: str = "--out") -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; on success it replaces ``out``, else it vanishes."""
    out = Path(out)
    check_output_folder(out, where)
    created = _make_parents(out.parent)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; results are ordinary files
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return the ones created (outermost first)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
