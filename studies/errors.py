"""The one exception a study raises for bad input, and the "did you mean" message for unknown names."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

LISTING = "tools/transfer.py list"


class StudyError(ValueError):
    """Bad input to a study: shown as one ``error: ...`` line with exit code 2, before anything runs."""


def unknown(kind: str, name: str, choices: Iterable[str]) -> StudyError:
    """``unknown <kind> 'name'``, the closest known names (case-insensitive) and how to list them all."""
    by_lower = {choice.lower(): choice for choice in choices}
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), by_lower, n=3, cutoff=0.5)]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return StudyError(f"unknown {kind} {name!r}: {hint}list them with {LISTING}")
