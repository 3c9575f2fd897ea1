"""Suite-wide: mirrors of served logs go to a temporary directory, never the user's cache."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
