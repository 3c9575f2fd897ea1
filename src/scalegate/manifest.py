"""Model checkpoint digests compatible with OpenSSF model signing (``files`` serialization).

Each file of a checkpoint is hashed with SHA-256; the checkpoint digest is the
SHA-256 over the concatenated raw file digests in alphabetical order of their
relative POSIX paths — the root digest the OpenSSF model-signing in-toto payload
carries as its subject. The ledger's ``checkpoint`` statement binds that digest
(and the per-file manifest) to a run, a step and a compute figure.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from scalegate.errors import ScalegateError

_CHUNK = 1 << 20
_IGNORED = frozenset({".git", ".gitattributes", ".github", ".gitignore", "model.sig"})


class CheckpointManifest(BaseModel):
    """Per-file SHA-256 digests of a checkpoint and the root digest over them."""

    model_config = ConfigDict(frozen=True)

    files: dict[str, str]

    @property
    def digest(self) -> str:
        """Root digest: SHA-256 over the raw file digests, sorted by path."""
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(bytes.fromhex(self.files[name]))
        return h.hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_of(path: str | Path) -> CheckpointManifest:
    """Hash a checkpoint file or directory (symlinks are not followed into)."""
    root = Path(path)
    if root.is_file():
        return CheckpointManifest(files={root.name: _file_digest(root)})
    if not root.is_dir():
        raise ScalegateError(
            f"checkpoint {root} does not exist",
            hint="Pass the file or directory the training script saved.",
        )
    files = {
        p.relative_to(root).as_posix(): _file_digest(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not (_IGNORED & set(p.relative_to(root).parts))
    }
    if not files:
        raise ScalegateError(f"checkpoint directory {root} holds no files to digest")
    return CheckpointManifest(files=files)
