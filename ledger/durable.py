"""Files that are promises (the log's last signed checkpoint, a witness's last
cosigned one): replaced whole, and on disk before anyone is told about them."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def replace_durably(path: Path, text: str) -> None:
    """Make ``text`` the contents of ``path``, atomically and durably: readers see the
    old contents or the new, never a mix, and once this returns a crash of the machine
    keeps the new. A temporary file of this process and thread (several may write the
    same promise at once) is written and fsynced, renamed over ``path``, and the
    directory is fsynced, for the rename itself to survive a crash."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
