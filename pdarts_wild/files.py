"""Writing run files so that neither a kill nor a full disk leaves a torn file or loses the previous one."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def atomic_write(path: str | Path, data: bytes | bytearray | memoryview | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it to ``path``.

    ``path`` holds either its previous content or all of ``data``, whatever happens. A failed write
    (a full disk, a read-only folder) removes the temporary file and raises an OSError naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    payload = data.encode() if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"not written ({err.strerror or err}); any earlier {path.name} is intact",
                      str(path)) from None
    with contextlib.suppress(OSError):  # make the rename itself durable (not every file system can)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
