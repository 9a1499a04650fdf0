"""The tools' argument parser: its errors are one ``error:`` line with exit code 2, like every other bad input.

argparse prints the whole usage (30 lines for tools/search.py) before its message and suggests nothing for a typo;
this parser names the closest choices of a bad value and the closest options of an unknown one instead.
``range_problem`` is the range check of numeric settings that the search and the training tools share.
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NoReturn

from .messages import MAX_LINE, closest, name_hint, one_line

# argparse's messages (Python 3.11-3.13): "argument --x: invalid choice: 'v' (choose from 'a', 'b')"
INVALID_CHOICE = re.compile(r"^(?P<argument>argument [^:]+): invalid choice: (?P<value>.+?) "
                            r"\(choose from (?P<choices>.*)\)$")
UNRECOGNIZED = "unrecognized arguments: "
Settings = Mapping[str, float | None]  # flag -> value; None: left unset
_NO_SETTINGS: Settings = MappingProxyType({})


class ToolParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one short ``error:`` line (sub-parsers are of the same class)."""

    def error(self, message: str) -> NoReturn:
        text = self._with_hint(message)
        self.exit(2, one_line(f"error: {text}", MAX_LINE) + "\n")

    def _with_hint(self, message: str) -> str:
        listing = f"{self.prog} --help"
        choice = INVALID_CHOICE.match(message)
        if choice:
            value = _unquote(choice["value"])
            choices = [_unquote(c) for c in choice["choices"].split(", ")]
            return f"{choice['argument']}: invalid choice {value!r} ({name_hint(value, choices, listing)})"
        if message.startswith(UNRECOGNIZED):
            unknown = message[len(UNRECOGNIZED):].split()
            flag = next((word.split("=")[0] for word in unknown if word.startswith("--")), None)
            if flag:  # compared without the dashes every option shares
                options = [o[2:] for a in self._actions for o in a.option_strings if o.startswith("--")]
                close = ", ".join("--" + name for name in closest(flag[2:], set(options) - {"help"}))
                return f"{message} ({f'closest: {close}; ' if close else ''}all: {listing})"
        return f"{message} (see {listing})"


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def positive_int(text: str) -> int:
    """An argparse type: a network cannot have 0 or -3 classes, channels, cells or pixels."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def range_problem(*, positive: Settings = _NO_SETTINGS, non_negative: Settings = _NO_SETTINGS,
                  fractions: Settings = _NO_SETTINGS, positive_counts: Settings = _NO_SETTINGS,
                  counts: Settings = _NO_SETTINGS) -> str | None:
    """The first setting out of its range as ``--flag must be ..., got value``, or None; unset (None) ones pass.

    Shared by the search's and the training tools' checks so that both refuse NaN and infinity: NaN fails every
    comparison, so ``value <= 0`` let it through where ``not 0 < value < inf`` does not."""
    ranges: list[tuple[Settings, str, Callable[[float], bool]]] = [
        (positive, "finite and > 0", lambda v: 0 < v < math.inf),
        (non_negative, "finite and >= 0", lambda v: 0 <= v < math.inf),
        (fractions, "in [0, 1)", lambda v: 0 <= v < 1),
        (positive_counts, "> 0", lambda v: v > 0),
        (counts, ">= 0", lambda v: v >= 0),
    ]
    for values, wording, within in ranges:
        for flag, value in values.items():
            if value is not None and not within(value):
                return f"{flag} must be {wording}, got {value}"
    return None
