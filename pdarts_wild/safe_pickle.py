"""Reading the CIFAR python batches, which are pickles, without letting a crafted file run code.

``pickle.load`` calls whatever functions a file names; datasets come from mirrors, colleagues and shared
drives, so every pickle we read goes through :func:`read_plain_pickle` instead. Its unpickler admits only
the globals the official files name (numpy's array rebuild function, ``numpy.ndarray`` and ``numpy.dtype``)
and the result must consist of what those files hold: dicts, lists, str/bytes, numbers and numpy arrays of
plain (non-object) dtypes.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's _reconstruct, wherever this numpy keeps it
# The globals of the official files (python 2 and numpy 1: numpy.core) and of copies re-pickled by numpy 2.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_PLAIN = (str, bytes, int, float, bool, type(None))


class PickleRefused(pickle.UnpicklingError):
    """A pickle that names a global, or holds an object, the official files never do."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise PickleRefused(f"it names {module}.{name}, which a dataset file never holds") from None

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefused("it refers to persistent objects, which a dataset file never holds")


def _check_plain(value: Any) -> None:
    """Refuse anything but dicts, lists, str/bytes, numbers, None and arrays of plain dtypes."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key)
            _check_plain(item)
    elif isinstance(value, list):
        for item in value:
            _check_plain(item)
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise PickleRefused(f"it holds an array of Python objects (dtype {value.dtype})")
    elif type(value) not in _PLAIN:
        raise PickleRefused(f"it holds a {type(value).__name__}, which a dataset file never holds")


def loads_plain(data: bytes) -> Any:
    """Unpickle ``data`` (python 2 strings read as latin-1, as numpy needs) admitting only plain data."""
    value = _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    _check_plain(value)
    return value


def read_plain_pickle(path: str | Path) -> Any:
    """The plain data in the pickle file ``path``; :class:`PickleRefused` for anything else, other
    ``pickle.UnpicklingError``/``EOFError``/``ValueError`` for a broken file, ``OSError`` for an unreadable one."""
    return loads_plain(Path(path).read_bytes())
