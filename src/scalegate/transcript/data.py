"""A run's data manifest: the digests of the examples (or shards) it may train on.

The run statement commits to the manifest's RFC 6962 Merkle root (``data_root``). The lab
hands the manifest over with the challenged segments; a verifier checks it against that
root and that every example each re-executed step fed is in it
(:func:`~scalegate.transcript.digest.example_digests`). On disk it is text: one hex digest
per line, in the order the lab's data loader defines.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scalegate.errors import ScalegateError
from scalegate.transcript.digest import batch_digest, batches_root

__all__ = ["DataManifest", "data_root"]


def data_root(item_digests: list[bytes]) -> str:
    """The Merkle root (RFC 6962, hex) of a data manifest: the digests of its shards or
    examples, in the order the data loader defines them."""
    return batches_root(item_digests)


class DataManifest:
    """The digests of the examples a run may train on, in order."""

    def __init__(self, items: Iterable[bytes]) -> None:
        self.items = list(items)
        self._set = set(self.items)

    @classmethod
    def of_dataset(cls, dataset: Any) -> DataManifest:
        """The manifest of a map-style dataset: the digest of each example it returns."""
        return cls(batch_digest(dataset[i]) for i in range(len(dataset)))

    @classmethod
    def read(cls, path: Path) -> DataManifest:
        """Read a manifest file; :class:`ScalegateError` naming the line that is not a
        digest."""
        items = []
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ScalegateError(f"cannot read the data manifest {path}: {exc}") from None
        for n, line in enumerate(lines, 1):
            text = line.strip()
            if not text:
                continue
            try:
                item = bytes.fromhex(text)
            except ValueError:
                item = b""
            if len(item) != 32:
                raise ScalegateError(f"{path}:{n}: not a SHA-256 digest in hex: {text[:80]!r}",
                                     hint="A data manifest holds one 64-hex-digit digest a line.")
            items.append(item)
        return cls(items)

    def write(self, path: Path) -> None:
        """Write the manifest, one hex digest a line."""
        Path(path).write_text("".join(f"{d.hex()}\n" for d in self.items))

    @property
    def root(self) -> str:
        """The Merkle root the run statement commits to (``data_root``)."""
        return data_root(self.items)

    def __contains__(self, digest: object) -> bool:
        return digest in self._set

    def __len__(self) -> int:
        return len(self.items)
