"""Checks on the paths and store URLs a user gives, made before anything is written.

Each check creates nothing: it finds the nearest folder that exists, and says in one line what
is wrong (a file where a folder must be, a system folder, no write permission).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

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


def engine_url(url: str) -> str:
    """``url`` as SQLAlchemy should open it: a plain ``postgresql://`` names psycopg 3 (the
    driver bitprism installs; SQLAlchemy's default, psycopg2, is not installed)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


class StoreError(PathError):
    """A store URL that cannot be used, or a store that is not there; says which and why."""


def check_store_url(url: str, *, create: bool) -> Path | None:
    """Check a store URL before anything is written; returns the SQLite file, if it is one.

    ``create=False`` (read-only commands) requires an existing SQLite file, so that a typo
    never creates an empty database.

    Raises:
        StoreError: naming the URL and what is wrong with it.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"store {url!r} is not a database URL; e.g. sqlite:///bitprism.db or "
            "postgresql://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"store {url!r}: only sqlite:// and postgresql:// stores are supported")
    if backend != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):
        raise StoreError(f"store {url!r}: an in-memory SQLite store cannot be shared; name a file")
    path = Path(parsed.database).expanduser()
    if path.is_dir():
        raise StoreError(f"store {url!r}: {path} is a folder")
    if not create and not path.is_file():
        raise StoreError(f"no bitprism store at {path} (from {url!r})")
    try:
        writable_dir(path.parent, "store")
    except PathError as exc:
        raise StoreError(str(exc)) from None
    return path.resolve()
