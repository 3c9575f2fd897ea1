"""The framework integrations' fixtures: one torch thread, a real workspace."""

from integrations.conftest import one_thread, ws  # noqa: F401
