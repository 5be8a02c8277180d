"""Checks on the paths a user gives, made before anything is written.

Each check creates nothing: it finds the nearest folder that exists, and says in one line what
is wrong (a file where a folder must be, a system folder, no write permission).
"""

from __future__ import annotations

import os
from pathlib import Path

# Pseudo file systems: writable by root on paper, but no place for a user's files.
_SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


class PathError(ValueError):
    """A path that cannot be used; the message names it and says why."""


def writable_dir(path: str | Path, what: str) -> Path:
    """``path`` resolved, once it is clear that it is (or can be made) a writable folder.

    Args:
        path: The folder, existing or not.
        what: What the folder is for, e.g. ``"output_dir"``; starts the error message.

    Raises:
        PathError: when a file stands in the way, the folder is a system one or not writable.
    """
    resolved = Path(path).expanduser().resolve()
    for root in _SYSTEM_ROOTS:
        if resolved == root or root in resolved.parents:
            raise PathError(f"{what} {path}: inside {root}, which holds no user files")
    existing = resolved
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PathError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{what} {path}: {existing} is not writable")
    return resolved


def writable_file(path: str | Path, what: str, suffix: str | None = None) -> Path:
    """``path`` resolved, once it is clear a file can be written there (folders may be made).

    Raises:
        PathError: on a wrong suffix, a folder at ``path``, or an unwritable place.
    """
    target = Path(path).expanduser()
    if suffix is not None and target.suffix != suffix:
        raise PathError(f"{what} {path}: must end in {suffix}")
    if target.is_dir():
        raise PathError(f"{what} {path}: is a folder")
    if target.exists() and not os.access(target, os.W_OK):
        raise PathError(f"{what} {path}: exists and is not writable")
    folder = writable_dir(target.parent, what)
    return folder / target.name
