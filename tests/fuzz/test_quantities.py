"""Quantities as people type them (FLOP like ``1e25``, ``70B``, durations like ``14d``,
multipliers like ``4x``, times like ``2027-01-01T00:00:00Z``): valid ones round-trip; anything
else is a ``ValueError`` for the parsers (their callers word it) and the project's own error at
the command line — in linear time, whatever its length."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalegate import governance
from scalegate.cli._compute import _quantity, _whole
from scalegate.cli._ledger import _when
from scalegate.cli._runs import _ceiling_value
from scalegate.errors import ComputeError, LedgerError, RunError
from scalegate.units import (
    MAX_DURATION,
    format_duration,
    parse_duration,
    parse_quantity,
    parse_ratio,
)

from .mutations import fuzz_settings, text_mutants

SAMPLES = ["1e25", "3.14e23", "70B", "15T", "1.2K", " 6e14 ", "370,000", "1_000", "14d", "6mo",
           "90s", "30min", "2w", "1y", "4x", "1.5X", "2×", "2027-01-01T00:00:00Z",
           "2026-03-01T12:00:00+02:00", "365d"]
TYPED = text_mutants(SAMPLES) | st.text(max_size=30)
NOW = datetime(2026, 3, 1, tzinfo=UTC)
SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
UNITS = ["s", "min", "h", "d", "w", "mo", "y"]


@fuzz_settings(100)
@given(st.floats(min_value=5e-324, allow_infinity=False, allow_nan=False))
def test_a_number_round_trips(value: float) -> None:
    assert parse_quantity(repr(value)) == value
    assert parse_ratio(f"{value!r}x") == value


@fuzz_settings(60)
@given(n=st.integers(1, 10**6), suffix=st.sampled_from(sorted(SUFFIX)), lower=st.booleans())
def test_a_suffixed_count_reads(n: int, suffix: str, lower: bool) -> None:
    text = f"{n}{suffix.lower() if lower else suffix}"
    assert parse_quantity(text) == n * SUFFIX[suffix]


@fuzz_settings(80)
@given(n=st.integers(1, 1000), unit=st.sampled_from(UNITS))
def test_a_duration_round_trips(n: int, unit: str) -> None:
    delta = parse_duration(f"{n}{unit}")
    assert parse_duration(format_duration(delta)) == delta


@fuzz_settings(400)
@given(TYPED)
def test_typed_quantities_read_or_say_what_was_expected(text: str) -> None:
    for parse, ok in ((parse_quantity, _positive), (parse_ratio, _positive),
                      (parse_duration, _duration)):
        try:
            assert ok(parse(text)), (parse.__name__, text)
        except ValueError as exc:
            assert "expected" in str(exc)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _duration(value: timedelta) -> bool:
    return timedelta(0) <= value <= MAX_DURATION


@fuzz_settings(300)
@given(TYPED | st.sampled_from(["1e308x", "1e309", "99999999999999999999d", "1001y"]))
def test_command_line_quantities_read_or_raise_the_projects_error(text: str) -> None:
    try:
        value = _quantity(text, "--params")
        assert value is None or _positive(value)
        _whole(text, "--chips")
    except ComputeError as exc:
        assert "--params" in str(exc) or "--chips" in str(exc)
    try:
        when = _when(text, "--valid-until", base=NOW)
        assert when is not None and when.tzinfo is not None
    except LedgerError as exc:
        assert "--valid-until" in str(exc)
    for parse in (_ceiling_value, governance._ceiling):
        try:
            assert _positive(parse(text, 1e21))
        except RunError as exc:
            assert "ceiling" in str(exc)


@fuzz_settings(100)
@given(when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       offset=st.sampled_from(["Z", "+00:00", "-10:00", "+14:00", "-23:59", ""]))
def test_times_read_or_raise_the_projects_error(when: datetime, offset: str) -> None:
    try:
        got = _when(when.isoformat() + offset, "--valid-until", base=NOW)
        assert got is not None and got.tzinfo is not None
    except LedgerError as exc:
        assert "--valid-until" in str(exc)


# --- what the fuzzing found --------------------------------------------------------------------


@pytest.mark.parametrize("parse", [parse_quantity, parse_duration, parse_ratio])
@pytest.mark.parametrize("text", ["1" * 50_000 + "q", "1" + " " * 50_000 + "q",
                                  "1." + "1" * 50_000 + "q"], ids=["digits", "spaces", "decimals"])
def test_long_text_is_refused_in_linear_time(parse: object, text: str) -> None:
    # Backtracking over where to split a run of digits took minutes for 50 kB (a policy's
    # value, or a policy statement in someone else's ledger).
    started = time.monotonic()
    with pytest.raises(ValueError, match="expected") as err:
        parse(text)  # type: ignore[operator]
    assert time.monotonic() - started < 0.5
    assert len(str(err.value)) < 200  # and the message quotes it cut short


@pytest.mark.parametrize("text", ["99999999999999999999d", "9" * 400 + "s", "9000y", "1001y"])
def test_durations_past_a_thousand_years_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="at most 1000y"):
        parse_duration(text)
    with pytest.raises(LedgerError, match="--valid-until"):
        _when(text, "--valid-until", base=NOW)


def test_a_time_past_the_last_date_in_utc_is_refused() -> None:
    with pytest.raises(LedgerError, match="past the year 9999"):
        _when("9999-12-31T23:59:59-10:00", "--valid-until", base=NOW)


@pytest.mark.parametrize("parse", [_ceiling_value, governance._ceiling])
def test_a_ceiling_too_large_for_a_number_is_refused(parse: object) -> None:
    with pytest.raises(RunError, match="more effective FLOP than a number holds"):
        parse("1e308x", 1e21)  # type: ignore[operator]
