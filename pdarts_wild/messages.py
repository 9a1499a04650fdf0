"""One-line, short messages for the user: exceptions squeezed onto one line, and unknown names."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

MAX_LINE = 200  # characters of an ``error: ...`` line


def one_line(text: object, limit: int = MAX_LINE) -> str:
    """``text`` (an exception's message, say) on one line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe(err: BaseException, limit: int = 120) -> str:
    """An exception as one line to quote inside a message: its message, or its type when it has none."""
    return one_line(err, limit) or type(err).__name__


def problem(err: BaseException) -> str:
    """What went wrong, for an ``error:`` line: a file system error as ``FILE: reason``; for an error re-raised
    from a data-loader worker, whose message holds the worker's traceback, the traceback's last line."""
    if isinstance(err, OSError) and err.filename is not None:
        target = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else str(err.filename)
        return f"{target}: {err.strerror or describe(err)}"
    lines = [line for line in str(err).splitlines() if line.strip()]
    if any(line.lstrip().startswith(("Traceback", "Original Traceback")) for line in lines):
        return lines[-1]
    return str(err) or type(err).__name__


def error_line(err: BaseException) -> str:
    """The one ``error: ...`` line (at most :data:`MAX_LINE` characters) a tool prints for ``err``."""
    return "error: " + one_line(problem(err), MAX_LINE - len("error: "))


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of the ``known`` names closest to ``name`` (case aside), best first."""
    by_lower: dict[str, str] = {}
    for k in known:
        by_lower.setdefault(k.lower(), k)
    return [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)]


def name_hint(name: str, known: Iterable[str], listing: str) -> str:
    """``closest: A, B; all: LISTING`` (no ``closest`` part when nothing is close)."""
    close = closest(name, known)
    return (f"closest: {', '.join(close)}; " if close else "") + f"all: {listing}"


def unknown_name(kind: str, name: str, known: Iterable[str], listing: str) -> str:
    """``unknown KIND 'name' (closest: ...; all: LISTING)``: the closest known names and how to list them all."""
    return f"unknown {kind} {one_line(repr(name), 60)} ({name_hint(name, known, listing)})"
