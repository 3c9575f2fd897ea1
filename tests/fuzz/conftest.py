"""The fuzz tests' shared ledger, built once per session."""

from __future__ import annotations

import pytest

from .lab import Lab, build_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return build_lab(tmp_path_factory.mktemp("fuzz-lab"))
