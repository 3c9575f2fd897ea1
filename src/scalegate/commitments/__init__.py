"""Joint commitments: documents, statements about them, and their status from evidence.

- :class:`Commitment` — a commitment as code (:func:`load_commitment`,
  :func:`parse_commitment`, bundled ones in :func:`bundled_commitments`);
- :func:`commitment_status` — what a commitment's statements and its parties' audited
  logs show at a time: proposed, active, lapsed, expired; each party compliant, in breach
  (with the statements that prove it) or unverifiable.
"""

from scalegate.commitments.document import (
    Commitment,
    bundled_commitments,
    load_commitment,
    parse_commitment,
    read_commitment,
)
from scalegate.commitments.status import CommitmentStatus, Evidence, commitment_status

__all__ = ["Commitment", "CommitmentStatus", "Evidence", "bundled_commitments",
           "commitment_status", "load_commitment", "parse_commitment", "read_commitment"]
