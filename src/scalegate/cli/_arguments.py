"""Reading what users type for the arguments several commands share."""

from __future__ import annotations

from pathlib import Path


def key_text(text: str) -> str:
    """A key given as its text, or as a file whose last non-empty line is one."""
    path = Path(text)
    if "+" not in text and path.is_file():
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
                 if ln.strip()]
        return lines[-1] if lines else ""
    return text
