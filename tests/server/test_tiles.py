"""The C2SP tlog-tiles format: paths, which tiles a tree has, entry bundles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalegate.errors import ProofError
from scalegate.ledger import MAX_ENTRY_BYTES, Tile, parse_bundle, parse_tile_path, tiles_of
from scalegate.ledger.tiles import bundle


@pytest.mark.parametrize(("tile", "path"), [
    (Tile(0, 1234067), "tile/0/x001/x234/067"),
    (Tile(0, 0), "tile/0/000"),
    (Tile(3, 5, 17), "tile/3/005.p/17"),
    (Tile(-1, 1000, 1), "tile/entries/x001/000.p/1"),
    (Tile(63, 999), "tile/63/999"),
])
def test_paths_are_the_specs(tile: Tile, path: str) -> None:
    assert tile.path() == path
    assert parse_tile_path(path) == tile


@pytest.mark.parametrize("path", [
    "tile/0/0001", "tile/0/01", "tile/00/000", "tile/64/000", "tile/0/000.p/0",
    "tile/0/000.p/256", "tile/0/000.p/007", "tile/0/001/000", "tile/0/x000", "tile/entries/",
    "tile/-1/000", "tile/0/000.p/", "tile/0/000/", "tile/ 0/000", "tile/0/x01/000",
    "tile/entrie/000", "tile/0/\u0661\u0662\u0663", "tile/0/x000/123",
])
def test_paths_the_spec_does_not_allow_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="tile"):
        parse_tile_path(path)


@given(st.integers(-1, 63), st.integers(0, 10**12), st.integers(1, 256))
def test_every_tile_path_round_trips(level: int, index: int, width: int) -> None:
    tile = Tile(level, index, width)
    assert parse_tile_path(tile.path()) == tile


def _count(size: int) -> dict[tuple[int, bool], list[int]]:
    out: dict[tuple[int, bool], list[int]] = {}
    for t in tiles_of(size):
        out.setdefault((t.level, t.full), []).append(t.width)
    return out


def test_the_specs_example_trees() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
    # level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width 17,
    # and one partial level 2 tile of width 1"
    got = _count(70_000)
    assert len(got[(0, True)]) == 273 and got[(0, False)] == [112]
    assert len(got[(1, True)]) == 1 and got[(1, False)] == [17]
    assert got[(2, False)] == [1] and (2, True) not in got
    assert len(got[(-1, True)]) == 273 and got[(-1, False)] == [112]  # bundles with level 0
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
    # tile of width 1"
    assert _count(256) == {(0, True): [256], (-1, True): [256], (1, False): [1]}
    assert list(tiles_of(0)) == []


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_bundles_round_trip(entries: list[bytes]) -> None:
    assert parse_bundle(bundle(entries), len(entries)) == entries


def test_bundles_refuse_what_they_cannot_hold_and_name_what_is_cut() -> None:
    with pytest.raises(ValueError, match="65,535"):
        bundle([b"x" * (MAX_ENTRY_BYTES + 1)])
    assert parse_bundle(bundle([b"x" * MAX_ENTRY_BYTES]), 1) == [b"x" * MAX_ENTRY_BYTES]
    data = bundle([b"abc", b"defg"])
    for cut, why in ((1, "length prefix"), (4, "cut short"), (len(data) - 1, "cut short")):
        with pytest.raises(ProofError, match=why):
            parse_bundle(data[:cut], 2)
    with pytest.raises(ProofError, match="holds 2 entries, not 3"):
        parse_bundle(data, 3)
