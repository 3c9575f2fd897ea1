"""Asking a witness over HTTP for its cosignature (C2SP ``tlog-witness``, client side)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Sequence

from scalegate.audit import format_add_checkpoint
from scalegate.errors import LedgerError, WitnessConflict, WitnessRefused
from scalegate.ledger import CosignatureVerifier, parse_note

__all__ = ["HttpWitness"]


class HttpWitness:
    """A witness at ``url`` whose cosignatures verify under ``verifier``.

    Its size for a log is learnt from its answers (a 409 says it); the first request of
    a session sends the last size this client saw, or 0.
    """

    def __init__(self, url: str, verifier: CosignatureVerifier, *,
                 timeout_s: float = 10.0) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.verifier = verifier
        self.timeout_s = timeout_s
        self._sizes: dict[str, int] = {}

    def size(self, origin: str) -> int:
        """The size this witness last cosigned for ``origin``, as far as this client knows."""
        return self._sizes.get(origin, 0)

    def add_checkpoint(self, old_size: int, consistency_proof: Sequence[bytes],
                       checkpoint_note: str | bytes) -> str:
        """POST add-checkpoint; the cosignature lines, or the witness's refusal."""
        note = checkpoint_note.decode() if isinstance(checkpoint_note, bytes) else checkpoint_note
        origin = parse_note(note)[0].split("\n", 1)[0]
        body = format_add_checkpoint(old_size, consistency_proof, note).encode()
        req = urllib.request.Request(self.url + "add-checkpoint", data=body, method="POST",
                                     headers={"Content-Type": "text/plain"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                lines = resp.read(1 << 16).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            text = exc.read(1 << 12).decode("utf-8", "replace")
            if exc.code == 409 and exc.headers.get_content_type() == "text/x.tlog.size":
                try:
                    size = int(text.strip())
                except ValueError:
                    raise WitnessRefused(f"witness {self.url} answered 409 without a size.",
                                         status=409) from None
                self._sizes[origin] = size
                raise WitnessConflict(f"witness {self.url} last cosigned size {size}.",
                                      size=size) from None
            raise WitnessRefused(f"witness {self.url} refused ({exc.code}): {text[:300]}",
                                 status=exc.code) from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            raise LedgerError(f"witness {self.url} is unreachable: {exc}.") from None
        self._sizes[origin] = int(parse_note(note)[0].split("\n")[1])
        return lines
