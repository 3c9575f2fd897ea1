"""Quantities as people write them: ``1e25``, ``70B``, ``15T``, ``14d``, ``6mo``, ``4x``.

Parsers raise ``ValueError`` with a message saying what was expected; callers
(policy loader, CLI) wrap it in their own error with the location.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGTPE]?)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|min|h|d|w|mo|y)\s*$")
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
_RATIO = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*[xX×]\s*$")


def parse_quantity(text: str | float | int) -> float:
    """A positive count or FLOP figure: ``1e25``, ``3.14e23``, ``70B``, ``15T``, ``1.2K``."""
    if isinstance(text, bool):
        raise ValueError("expected a number such as 1e25 or 70B, got a boolean")
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = _NUMBER.match(str(text))
        if not m:
            raise ValueError(f"expected a number such as 1e25, 70B or 15T, got {text!r}")
        value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive finite number, got {text!r}")
    return value


def parse_duration(text: str | timedelta) -> timedelta:
    """A duration: ``90s``, ``30min``, ``24h``, ``14d``, ``2w``, ``6mo``, ``1y``."""
    if isinstance(text, timedelta):
        return text
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(
            f"expected a duration such as 24h, 14d, 2w, 6mo or 1y, got {text!r}"
        )
    return timedelta(seconds=float(m.group(1)) * _DURATION_UNIT[m.group(2)])


def parse_ratio(text: str | float | int) -> float:
    """A multiplier ``4x`` (or a bare number) that must be greater than 1 for a cadence."""
    if isinstance(text, bool):
        raise ValueError("expected a multiplier such as 4x, got a boolean")
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = _RATIO.match(str(text))
        if not m:
            raise ValueError(f"expected a multiplier such as 2x or 4x, got {text!r}")
        value = float(m.group(1))
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive multiplier, got {text!r}")
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
