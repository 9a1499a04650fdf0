"""The one exception a study raises for bad input, and its message for unknown names."""
from __future__ import annotations

from collections.abc import Iterable

from pdarts_wild.messages import unknown_name

LISTING = "tools/transfer.py list"


class StudyError(ValueError):
    """Bad input to a study: shown as one ``error: ...`` line with exit code 2, before anything runs."""


def unknown(kind: str, name: str, choices: Iterable[str]) -> StudyError:
    """``unknown <kind> 'name' (closest: ...; all: tools/transfer.py list)``, as every tool of ours says it."""
    return StudyError(unknown_name(kind, name, choices, LISTING))
