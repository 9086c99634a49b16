"""Files: atomic writes (a reader never sees half a file, a crash never leaves one) and the
folder where caches live."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from star.errors import ConfigError


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A sibling temporary file to write; fsynced and renamed over `path` once the block ends
    without an error, so `path` holds either the old content or the whole new one. The folder
    is fsynced after the rename, so the new name survives a power loss too."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with partial.open(mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:  # a write that failed (a bad record, Ctrl+C) leaves nothing behind
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the folder's entries (a new file, a rename) durable: fsync of a file covers its
    content, not the name under which its folder lists it."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_folder(folder: Path) -> None:
    """`mkdir -p` whose new folders survive a power cut: each one it makes is fsynced into its
    parent, so a file later synced inside it is not left without a name."""
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for path in reversed(missing):
        fsync_folder(path.parent)


def fsync_tree(folder: Path) -> None:
    """fsync every file below `folder` and every folder, before the tree is renamed into place:
    a library's `save_pretrained` writes without syncing."""
    for path in sorted(folder.rglob("*"), reverse=True):  # contents before their folders
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        else:
            fsync_folder(path)
    fsync_folder(folder)


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (made if missing) across processes, for work
    that several processes (torchrun's ranks, two commands) may start at once and only one
    must do; the others wait, then find it done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
        yield


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


def remove_stale_partials(folder: Path) -> None:
    """Delete the temporary files `write_text_atomic` left in `folder` (and below) when its
    process was killed mid-write; a file whose writer still runs is kept."""
    for partial in folder.rglob(".*.tmp"):
        pid = partial.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _running(int(pid)):
            partial.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, written as the rows come (a pool's rows are never all held)."""
    with atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return list(iter_jsonl(path))


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Named arrays in one .npz file, written atomically."""
    with atomic_file(path, "wb") as handle:
        np.savez(handle, **arrays)


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays `write_arrays` wrote; None when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def digest(parts: Any) -> str:
    """The key of a cache entry or file: a hash of everything its content depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def check_cache_folder(folder: Path) -> None:
    """Exit-2 error now, not a traceback rounds later, when the cache folder is unusable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cache folder '{folder}' is not usable ({exc.strerror}); "
                          "set STAR_CACHE_DIR to a writable folder") from None


def cache_root() -> Path:
    """`$STAR_CACHE_DIR`, else `$XDG_CACHE_HOME/star`, else `~/.cache/star`."""
    if "STAR_CACHE_DIR" in os.environ:
        return Path(os.environ["STAR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(base) / "star"
