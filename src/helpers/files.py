"""Files that are never half-written: a temp file beside the target, fsync, atomic rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A file that appears at `path` whole or not at all (on an error `path` keeps what it held)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # a killed process is covered by the rename; this, an OS crash
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write `data` as indented JSON to `path` through atomic_file: never half-written."""
    with atomic_file(path) as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
    return path
