"""What the fuzz tests feed the parsers: valid inputs mutated the way attackers and accidents
mutate them (bit flips, truncation, duplicated or swapped lines, huge numbers, deep nesting,
odd Unicode), and random bytes.

``SCALEGATE_FUZZ_EXAMPLES`` multiplies every test's example count (default 1: the whole
directory runs in well under a minute; set it to 20 for a longer hunt).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from scalegate.errors import ScalegateError

__all__ = [
    "DEEP_TOKENS",
    "TOKENS",
    "examples",
    "fuzz_settings",
    "mutants",
    "nested_json",
    "only_own_errors",
    "text_mutants",
]

_FACTOR = float(os.environ.get("SCALEGATE_FUZZ_EXAMPLES", "1") or 1)



def examples(n: int) -> int:
    """``n`` scaled by ``SCALEGATE_FUZZ_EXAMPLES``."""
    return max(1, round(n * _FACTOR))


def fuzz_settings(n: int) -> settings:
    """Hypothesis settings for a fuzz test of about ``n`` examples (no deadline: CI is shared)."""
    return settings(
        max_examples=examples(n),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


def only_own_errors(parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``parse(*args)``; a :class:`ScalegateError` is a refusal (returned as ``None``), and
    anything else escapes, failing the test."""
    try:
        return parse(*args, **kwargs)
    except ScalegateError as exc:
        assert str(exc).strip(), "an error without a message"
        return None


# Bytes that matter to the formats under test: separators, base64's alphabet and padding,
# JSON and YAML syntax, numbers past every bound, control characters, odd Unicode.
TOKENS: tuple[bytes, ...] = (
    b"\n", b"\n\n", b"\r\n", b"\t", b" ", b"\x00", b"\x7f", b"\xff", b"\xc3", b"\xed\xa0\x80",
    "— ".encode(), "\u2028".encode(), "\u00a0".encode(), "é".encode(), "😀".encode(),
    "\ufeff".encode(), b"+", b"/", b"=", b"==", b"-", b"_", b"A", b"0", b"00", b"-1",
    b"18446744073709551615", b"18446744073709551616", b"9" * 400, b"9" * 5000, b"1e308",
    b"1e309",
    b"-0", b"NaN", b"Infinity", b"0x10", b"1_000",
    b'"', b"\\", b"\\u0000", b"\\ud800", b"{", b"}", b"[", b"]", b",", b":", b"null",
    b'{"a":', b"&a", b"*a", b"<<: *a", b"!!binary", b"!!python/object/apply:os.system",
    b"- ", b"? ", b"%YAML 1.1\n", b"---\n", b"...\n", b"#",
)
#: Nesting thousands deep (JSON arrays and objects, YAML flow and block collections).
DEEP_TOKENS: tuple[bytes, ...] = (b"[" * 3000, b'{"a":' * 3000, b"- " * 400, b"a:\n " * 200)


def _flip(draw: Any, data: bytes) -> bytes:
    if not data:
        return data
    i = draw(st.integers(0, len(data) - 1))
    return data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1:]


def _truncate(draw: Any, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def _delete(draw: Any, data: bytes) -> bytes:
    i = draw(st.integers(0, len(data)))
    return data[:i] + data[i + draw(st.integers(1, 16)):]


def _insert(draw: Any, data: bytes, tokens: Sequence[bytes]) -> bytes:
    i = draw(st.integers(0, len(data)))
    token = draw(st.sampled_from(tokens) | st.binary(min_size=1, max_size=8))
    return data[:i] + token + data[i + draw(st.integers(0, 2)):]


def _lines(draw: Any, data: bytes, tokens: Sequence[bytes]) -> bytes:
    lines = data.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["duplicate", "swap", "drop", "replace"]))
    if how == "duplicate":
        lines.insert(i, lines[i])
    elif how == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif how == "drop":
        del lines[i]
    else:
        lines[i] = draw(st.sampled_from(tokens) | st.binary(max_size=40))
    return b"\n".join(lines)


def _repeat(draw: Any, data: bytes) -> bytes:
    """A slice repeated many times: long lines, many signatures, deep nesting."""
    if not data:
        return data
    i = draw(st.integers(0, len(data) - 1))
    piece = data[i: i + draw(st.integers(1, 40))]
    return data[:i] + piece * draw(st.integers(2, 300)) + data[i:]


_OPS = (_flip, _truncate, _delete, _insert, _insert, _lines, _lines, _repeat)
_WITH_TOKENS = (_insert, _lines)


@st.composite
def mutants(draw: Any, seeds: Sequence[bytes], *, max_ops: int = 4, deep: bool = True) -> bytes:
    """One of ``seeds`` after one to ``max_ops`` mutations, or (now and then) random bytes.

    ``deep`` adds :data:`DEEP_TOKENS` to what may be inserted.
    """
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=200))
    tokens = TOKENS + DEEP_TOKENS if deep else TOKENS
    data = draw(st.sampled_from(list(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(_OPS))
        data = op(draw, data, tokens) if op in _WITH_TOKENS else op(draw, data)
    return data


def text_mutants(seeds: Sequence[str], *, max_ops: int = 4,
                 deep: bool = True) -> st.SearchStrategy[str]:
    """:func:`mutants` of text, decoded as a command line would be (undecodable bytes become
    lone surrogates, as ``sys.argv`` has them)."""
    raw = [s.encode("utf-8") for s in seeds]
    return mutants(raw, max_ops=max_ops, deep=deep).map(
        lambda b: b.decode("utf-8", "surrogateescape"))


def nested_json(depth: int, *, inner: bytes = b"1") -> bytes:
    """A JSON value nested ``depth`` lists deep."""
    return b"[" * depth + inner + b"]" * depth
