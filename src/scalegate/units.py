"""Quantities as people write them: ``1e25``, ``70B``, ``15T``, ``14d``, ``6mo``, ``4x``.

Parsers raise ``ValueError`` with a message saying what was expected; callers
(policy loader, CLI) wrap it in their own error with the location.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
# Possessive quantifiers and one way to spell each number: every match runs in linear time
# (backtracking over how to split a run of digits made 10 kB of them take seconds).
_DIGITS = r"(?:[0-9]++(?:\.[0-9]++)?|\.[0-9]++)"
_NUMBER = re.compile(rf"^\s*+({_DIGITS}(?:[eE][+-]?[0-9]++)?)\s*+([KMBGTPE]?)\s*+$", re.IGNORECASE)
_DURATION = re.compile(rf"^\s*+({_DIGITS})\s*+(s|min|h|d|w|mo|y)\s*+$")
_DURATION_UNIT = {
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    # A month is a twelfth of a Gregorian year: 30.436875 days.
    "mo": 365.2425 / 12 * 86400.0,
    "y": 365.2425 * 86400.0,
}
_RATIO = re.compile(rf"^\s*+({_DIGITS}(?:[eE][+-]?[0-9]++)?)\s*+[xX×]\s*+$")
#: The longest duration read: any date of this era plus it is still a date (before 9999).
MAX_DURATION = timedelta(days=1000 * 365.2425)


def _shown(value: object) -> str:
    """``repr(value)``, cut short: messages quote what was given, not 10 kB of it."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_quantity(text: str | float | int) -> float:
    """A positive count or FLOP figure: ``1e25``, ``3.14e23``, ``70B``, ``15T``, ``1.2K``."""
    if isinstance(text, bool):
        raise ValueError("expected a number such as 1e25 or 70B, got a boolean")
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = _NUMBER.match(str(text))
        if not m:
            raise ValueError(f"expected a number such as 1e25, 70B or 15T, got {_shown(text)}")
        value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive finite number, got {_shown(text)}")
    return value


def parse_duration(text: str | timedelta) -> timedelta:
    """A duration: ``90s``, ``30min``, ``24h``, ``14d``, ``2w``, ``6mo``, ``1y``."""
    if isinstance(text, timedelta):
        return text
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(
            f"expected a duration such as 24h, 14d, 2w, 6mo or 1y, got {_shown(text)}"
        )
    seconds = float(m.group(1)) * _DURATION_UNIT[m.group(2)]
    if seconds > MAX_DURATION.total_seconds():  # (or timedelta overflows, dates with it too)
        raise ValueError(f"expected a duration of at most 1000y, got {_shown(text)}")
    return timedelta(seconds=seconds)


def parse_ratio(text: str | float | int) -> float:
    """A multiplier ``4x`` (or a bare number) that must be greater than 1 for a cadence."""
    if isinstance(text, bool):
        raise ValueError("expected a multiplier such as 4x, got a boolean")
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = _RATIO.match(str(text))
        if not m:
            raise ValueError(f"expected a multiplier such as 2x or 4x, got {_shown(text)}")
        value = float(m.group(1))
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive multiplier, got {_shown(text)}")
    return value


def format_duration(delta: timedelta) -> str:
    """The shortest exact unit form of a duration (``14d``, ``6mo``), for display."""
    seconds = delta.total_seconds()
    for unit in ("y", "mo", "w", "d", "h", "min", "s"):
        size = _DURATION_UNIT[unit]
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{round(seconds / size)}{unit}"
    return f"{seconds:g}s"


def sig2(value: float, digits: int = 2) -> str:
    """A figure to ``digits`` significant figures in scientific notation (EU: 2 s.f.)."""
    if value == 0:
        return "0"
    return f"{value:.{digits - 1}e}".replace("e+", "e")


def singular(phrase: str) -> str:
    """The singular of a plural count phrase: its first word ending in ``s`` loses it.

    ``entries`` -> ``entry``, ``keys registered`` -> ``key registered``, ``gate
    consultations`` -> ``gate consultation``, ``witnesses`` -> ``witness``.
    """
    words = phrase.split(" ")
    for i, word in enumerate(words):
        if len(word) > 2 and word.endswith("s") and not word.endswith("ss"):
            if word.endswith("ies"):
                words[i] = word[:-3] + "y"
            elif word.endswith(("sses", "xes", "ches", "shes")):
                words[i] = word[:-2]
            else:
                words[i] = word[:-1]
            break
    return " ".join(words)


def counted(n: int, phrase: str) -> str:
    """``n`` and the plural ``phrase``, singular when ``n`` is 1: ``1 run``, ``2 runs``."""
    return f"{n} {singular(phrase) if n == 1 else phrase}"
