"""Files: atomic writes (a reader never sees half a file, a crash never leaves one) and the
folder where caches live."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """Write a sibling temporary file, fsync it, then rename it over `path`."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with partial.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


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


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def cache_root() -> Path:
    """`$STAR_CACHE_DIR`, else `$XDG_CACHE_HOME/star`, else `~/.cache/star`."""
    if "STAR_CACHE_DIR" in os.environ:
        return Path(os.environ["STAR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(base) / "star"
