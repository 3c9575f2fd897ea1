"""What the log's signed checkpoints cover, and what nothing vouches for.

A checkpoint signed by the log key fixes the tree of its size: the entries below it can
no longer be rewritten without the checkpoint failing. Entries past the latest checkpoint
(the *unverified tail*), or a whole log with no checkpoint, are vouched for by nothing
but the database itself: anyone who can write the file can delete such an entry and
rebuild the tree. And a checkpoint deleted along with entries leaves no trace in the
tree, so the log meta counts the checkpoints issued (``checkpoints_issued``, incremented
in the transaction that stores each one) and a count above what is stored says some went
missing.

:class:`Coverage` is the verdict; ``ledger verify`` (after checking every checkpoint) and
``run status`` (cheaply, from the latest one) report it instead of presenting entries no
checkpoint covers as verified.
"""

from __future__ import annotations

from dataclasses import dataclass

from scalegate.units import counted

__all__ = ["ISSUED_KEY", "Coverage", "issued_count"]

#: The meta key counting the checkpoints the log signed and stored.
ISSUED_KEY = "checkpoints_issued"


def issued_count(meta: dict[str, str]) -> int | None:
    """The issued-checkpoint count the meta records; ``None`` if absent or not a count."""
    raw = meta.get(ISSUED_KEY)
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


@dataclass(frozen=True)
class Coverage:
    """How far signed checkpoints cover a log of ``size`` entries.

    ``covered``: entries ``[0, covered)`` lie under a checkpoint whose signature and root
    held; ``issued``: the count the meta records (``None`` when it records none readable);
    ``stored``: checkpoints in the checkpoints table; ``meta_value``: the raw meta text.
    """

    size: int
    covered: int
    issued: int | None
    stored: int
    meta_value: str | None = None

    @property
    def missing(self) -> int:
        """Checkpoints the meta says were issued and are no longer stored."""
        return max(0, (self.issued or 0) - self.stored)

    @property
    def tail(self) -> tuple[int, int] | None:
        """The first and last index of entries no checkpoint covers (``None``: none)."""
        return (self.covered, self.size - 1) if self.covered < self.size else None

    def unverified(self) -> list[str]:
        """Why nothing vouches for the log as a whole (empty when checkpoints cover it,
        up to its tail)."""
        reasons: list[str] = []
        if self.issued is None:
            what = ("does not record" if self.meta_value is None
                    else f"holds {self.meta_value[:40]!r} for")
            reasons.append(
                f"the log meta {what} how many checkpoints were issued ({ISSUED_KEY}), so "
                "checkpoints deleted along with entries would go unnoticed.")
        elif self.missing:
            reasons.append(
                f"the log issued {counted(self.issued, 'checkpoints')} but "
                f"{self.stored} {'is' if self.stored == 1 else 'are'} stored: "
                f"{self.missing} went missing, and with them what they vouched for.")
        if self.size and not self.covered:
            reasons.append(
                f"no signed checkpoint covers any of its {counted(self.size, 'entries')}: "
                "nothing but the database file vouches for them.")
        return reasons

    def tail_text(self) -> str | None:
        """One sentence on the unverified tail, or ``None``."""
        if self.tail is None or not self.covered:
            return None
        first, last = self.tail
        span = f"entry {first}" if first == last else f"entries {first}..{last}"
        return (f"{span} ({counted(self.size - self.covered, 'entries')}) after the latest "
                f"checkpoint (size {self.covered}) are an unverified tail: no signed "
                "checkpoint covers them yet.")
