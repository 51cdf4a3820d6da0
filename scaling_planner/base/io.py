"""Small file helpers: atomic writes, so that an interrupted write never leaves half a file."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from .errors import InputError

FILE_MODE = 0o666  # less the umask, as any new file (tempfile.mkstemp's 0600 hides it from a shared team folder)
TMP_SUFFIX = ".tmp"  # the temporary file of a write in progress: ".<name>.<random>.tmp"


def write_text_atomic(path: str | Path, text: str, field: str = "out") -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``: a reader
    sees the old file or the whole new one, never half of it. The file is created with
    :data:`FILE_MODE` less the umask. An OSError is an InputError naming ``field``."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InputError(field, f"cannot write {p}: {exc.strerror or exc}") from None
    return p


def write_json_atomic(path: str | Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
