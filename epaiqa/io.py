"""Atomic file writes: a crash never leaves a half-written result, manifest or checkpoint.

A write goes to a hidden temporary file beside its target, renamed over the target when complete. Temporary
names carry the writer's pid and a tag of its host, ``.{name}.{pid}.{host}.{random}.tmp``, so that
:func:`sweep_stale_temps` can tell the leftovers of a killed writer (``kill -9``, OOM killer, node loss) from the
work in progress of a live one. The demo-cache builder names its temporary folders the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from epaiqa.errors import DataError

#: Where Linux (4.7+) shows the process's umask without changing it.
_PROC_STATUS = "/proc/self/status"
_UMASK_LOCK = threading.Lock()

#: Temporaries older than this are swept even when their pid runs (it may be another process's by now).
STALE_AFTER_S = 24 * 3600.0

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.(?P<host>[0-9a-f]{6})\.(?P<rand>[0-9a-f]{8})\.tmp$")


def _host_tag() -> str:
    """Six hex digits naming this host, so that a pid is only checked on the host that owns it."""
    return hashlib.blake2s(socket.gethostname().encode("utf-8", "replace"), digest_size=3).hexdigest()


def current_umask() -> int:
    """The process's umask, read from ``/proc`` where possible, else set and restored under a lock."""
    try:
        with open(_PROC_STATUS, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # No race-free way left: a file another thread creates in this instant gets the strict umask 077.
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def temp_path(path: str | Path, pid: int | None = None) -> Path:
    """A fresh temporary name beside ``path``: ``.{name}.{pid}.{host}.{random}.tmp`` (``pid``: this process's)."""
    path = Path(path)
    pid = os.getpid() if pid is None else pid
    return path.parent / f".{path.name}.{pid}.{_host_tag()}.{secrets.token_hex(4)}.tmp"


def make_temp_dir(path: str | Path) -> Path:
    """Create an empty temporary folder beside ``path`` (named by :func:`temp_path`; mode by the umask)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = temp_path(path)
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        return tmp


def _final_mode(path: Path) -> int:
    """The permission bits of the file ``path`` replaces, else those of a new file (``0o666`` less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the platform allows."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``.

    The result gets the permission bits of the file it replaces, else ``0o666`` less the umask, as a plain
    ``open`` would give. On an exception the temporary file is removed; after a ``kill -9`` it stays, named by
    :func:`temp_path`, for :func:`sweep_stale_temps`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _final_mode(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = temp_path(path)
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            else:  # pragma: no cover - Windows before 3.13
                os.chmod(tmp, mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically, indented, with a trailing newline."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def atomic_write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write dict rows as CSV atomically (columns in first-seen order; a header alone when there are none)."""
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["id", "task", "edit_type", "mos", "pred"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _pid_alive(pid: int) -> bool:
    """Whether a process of this pid runs on this host (a zombie counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    except OSError:  # cannot tell: assume it runs
        return True
    return True


def _is_stale(entry: os.DirEntry[str], now: float, max_age_s: float) -> bool:
    match = _TEMP_RE.match(entry.name)
    if match is None:
        return False
    pid, host = int(match["pid"]), match["host"]
    local = host == _host_tag()
    if local and pid == os.getpid():
        return False  # this process's own work in progress
    if local and not _pid_alive(pid):
        return True
    try:
        mtime = entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return False
    return now - mtime > max_age_s  # a live pid this old is most likely another process by now


def _remove(entry: os.DirEntry[str]) -> bool:
    """Remove a file or a folder; whether it is gone now (another sweeper may have been first)."""
    path = Path(entry.path)
    try:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)  # a racing sweeper removed part of it
        return not os.path.lexists(path)
    return True


def sweep_stale_temps(folder: str | Path, recursive: bool = False, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporaries of dead writers in ``folder`` (and its subfolders with ``recursive``).

    A temporary is a file or folder named by :func:`temp_path`. It is stale when its writer's pid runs no more
    on this host, or when it is older than ``max_age_s`` (the pid may have been reused; on another host it
    cannot be checked). Temporaries of live writers and of this process are left alone, and so is any other
    name. Returns the paths removed; a missing ``folder`` has none.
    """
    now = time.time()
    removed: list[Path] = []
    pending = [Path(folder)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if _TEMP_RE.match(entry.name):
                if _is_stale(entry, now, max_age_s) and _remove(entry):
                    removed.append(Path(entry.path))
            elif recursive and entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
    return removed


def ensure_folder(target: str | Path, marker: str, build: Callable[[Path], None]) -> Path:
    """``target``, built once: ``build(tmp)`` fills a temporary folder beside it, which is renamed into place.

    ``target`` counts as built when ``target/marker`` exists. Builders running at once each build their own copy;
    the first rename wins and the others discard theirs. The temporaries that killed builders left beside
    ``target`` are swept first (:func:`sweep_stale_temps`); a failed build leaves none.
    """
    target = Path(target)
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(target.parent)
    tmp = make_temp_dir(target)
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError as error:  # another builder finished first: keep its copy
            if not (target / marker).exists():
                raise DataError(
                    f"{target} exists but is not a finished build (it has no {marker}): "
                    "move it away or delete it, then run again"
                ) from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
