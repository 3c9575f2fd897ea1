"""One exception hierarchy for everything a user can get wrong or a check can refuse.

Every error carries a one-paragraph message that says *what* was wrong, *where*
(a file, line, field, index or key) and *what to do*. The CLI prints that
paragraph and exits with ``exit_code``; it never shows a traceback for these.
"""

from __future__ import annotations


class ScalegateError(Exception):
    """Base class of every expected scalegate error."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return join_hint(self.message, self.hint)


# A sentence is finished by one of these, possibly followed by closing quotes or brackets.
_ENDS = (".", "!", "?", "…")
_CLOSERS = "\"')]}`»’”"


def sentence(text: str) -> str:
    """``text`` with a full stop added unless it already ends a sentence (``.``, ``!``, ...).

    A trailing ``:``, ``;`` or ``,`` (a clause left open) is replaced by the full stop.
    """
    body = text.rstrip()
    if not body:
        return text
    if body.rstrip(_CLOSERS).endswith(_ENDS):
        return body
    return body.rstrip(":;,") + "."


def join_hint(message: str, hint: str | None) -> str:
    """One paragraph: the message as a finished sentence, then the hint.

    A message of several lines (one that lists problems) keeps its lines and gets the
    hint on a line of its own; a one-line message gets ``". "`` before the hint unless
    it already ends a sentence.
    """
    if not hint:
        return message
    hint = hint.strip()
    if "\n" in message.strip():
        return f"{message.rstrip()}\n{hint}"
    return f"{sentence(message)} {hint}"


# --- ledger -------------------------------------------------------------------------------


class LedgerError(ScalegateError):
    """Something about the transparency log or its entries."""


class ProofError(LedgerError):
    """A Merkle inclusion or consistency proof does not verify."""


class KeyMaterialError(LedgerError):
    """A key text or key file is malformed, has loose permissions, or cannot be used."""


class SignatureError(LedgerError):
    """A signature is missing, malformed or does not verify."""


class TileNotFound(LedgerError):
    """The log does not (yet) have the tile or entry bundle asked for."""


class NoteError(LedgerError):
    """A C2SP signed note or checkpoint is malformed or not signed by a trusted key."""


class EnvelopeError(LedgerError):
    """A DSSE envelope is malformed."""


class StatementError(LedgerError):
    """An in-toto statement or its scalegate predicate is malformed or of an unknown kind."""


class AppendRefused(LedgerError):
    """The ledger refused an entry (unregistered, expired or revoked key; bad signature).

    ``position`` is the refused envelope's place in the batch, when one was refused.
    """

    position: int | None = None


class StoreError(LedgerError):
    """The ledger's database is missing, corrupted, truncated or cannot be written."""


class KeyNotAuthorized(LedgerError):
    """A signer is not an organisation root, or its key is unregistered, expired or revoked."""


class IndexOutOfRange(LedgerError):
    """An entry index or tree size lies outside the log."""


class AppendConflict(AppendRefused):
    """``append_many(..., at_index=N)`` found the log at another size; rebuild and retry."""

    def __init__(self, message: str, *, size: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.size = size


class DuplicateStatement(AppendRefused):
    """The statement (the signed payload) is already in the log: the log admits it once."""

    def __init__(self, message: str, *, index: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.index = index


# --- witnesses -----------------------------------------------------------------------------


class WitnessRefused(LedgerError):
    """A witness refused to cosign a checkpoint.

    ``status`` is the HTTP status c2sp.org/tlog-witness prescribes for the refusal
    (400 bad request, 403 no trusted log signature, 404 unknown log, 409 conflict,
    422 consistency proof does not verify).
    """

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class WitnessConflict(WitnessRefused):
    """The old size is not the witness's latest cosigned size (``size``); retry from that."""

    def __init__(self, message: str, *, size: int, hint: str | None = None) -> None:
        super().__init__(message, status=409, hint=hint)
        self.size = size


class SplitViewDetected(WitnessRefused):
    """A log-signed checkpoint is inconsistent with one the witness cosigned: a split view.

    The evidence was persisted before this was raised; ``evidence`` says where.
    """

    exit_code = 3

    def __init__(
        self, message: str, *, status: int, size: int, evidence: str, hint: str | None = None
    ) -> None:
        super().__init__(message, status=status, hint=hint)
        self.size = size
        self.evidence = evidence


# --- policy, compute, gate -----------------------------------------------------------------


class DocumentProblems(ScalegateError):
    """A document a user wrote is invalid: ``problems`` lists every (location, message)."""

    def __init__(
        self, message: str, *, problems: list[tuple[str, str]] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


class PolicyError(DocumentProblems):
    """A policy file is invalid. ``problems`` lists every (location, message) found."""


class ComputeError(ScalegateError):
    """Compute inputs are missing, inconsistent or out of range."""


class EvaluationError(ScalegateError):
    """An evaluation could not run or produced no usable result."""


# --- runs ----------------------------------------------------------------------------------


class RunError(ScalegateError):
    """A run cannot be opened, stepped, approved or resumed as asked."""


class RunPaused(RunError):
    """The run is paused and may not train until what ``missing`` lists is in the ledger."""

    def __init__(self, message: str, *, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []


class LedgerUnavailable(RunError):
    """The ledger could not be written during training; the run does not go on blind."""


# --- audit ---------------------------------------------------------------------------------


class VerificationError(ScalegateError):
    """The auditor could not verify (as opposed to: verified and found violations)."""

    exit_code = 4


class TrustFileError(VerificationError, DocumentProblems):
    """An auditor's trust file is missing or invalid; ``problems`` lists (location, message)."""


class RegistryError(DocumentProblems):
    """A registry's configuration or its state is wrong; ``problems`` lists (where, what)."""


class CommitmentError(DocumentProblems):
    """A commitment document is invalid, or a commitment cannot be acted on as asked;
    ``problems`` lists (where, what)."""
