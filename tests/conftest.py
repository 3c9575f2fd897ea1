"""Suite-wide: mirrors of served logs go to a temporary directory, never the user's cache;
one throwaway PostgreSQL server for every test that needs one (``pg_server``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True, scope="session")
def _mirrors_kept_aside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Reading commands pointed at a URL sync a mirror under ``$SCALEGATE_MIRRORS``; the
    variable is set in ``os.environ`` so the subprocesses the tests start see it too."""
    before = os.environ.get("SCALEGATE_MIRRORS")
    os.environ["SCALEGATE_MIRRORS"] = str(tmp_path_factory.mktemp("mirrors"))
    yield
    if before is None:
        os.environ.pop("SCALEGATE_MIRRORS", None)
    else:
        os.environ["SCALEGATE_MIRRORS"] = before


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A PostgreSQL server started from the server binaries (see ``ledger/conftest_pg.py``);
    ``pg_server.new_database()`` gives a fresh database URL."""
    sys.path.insert(0, str(Path(__file__).parent / "ledger"))
    from conftest_pg import start_server

    server = start_server()
    try:
        yield server
    finally:
        server.stop()
