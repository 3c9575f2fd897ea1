"""Ed25519 keys in the C2SP signed-note form.

A verifier key is the text ``name+hexid+base64(0x01 || public key)`` and a
signing key ``PRIVATE+KEY+name+hexid+base64(0x01 || seed)`` — the formats of
``golang.org/x/mod/sumdb/note`` and c2sp.org/signed-note, so keys made here
work with Go tooling and the other way round. The key ID is the first four
bytes of ``SHA-256(name || 0x0A || type || public key)``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from scalegate.errors import KeyMaterialError

__all__ = [
    "SIG_TYPE_ED25519",
    "SigningKey",
    "VerifierKey",
    "check_key_name",
    "is_canonical_point",
    "is_small_order",
    "is_sound_key",
    "key_id",
    "verifier_key_in",
]

SIG_TYPE_ED25519 = 0x01
_PRIVATE_PREFIX = "PRIVATE+KEY+"


def key_id(name: str, public: bytes, sig_type: int = SIG_TYPE_ED25519) -> bytes:
    """First 4 bytes of ``SHA-256(name || 0x0A || sig_type || public)`` (c2sp.org/signed-note)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def check_key_name(name: str, where: str = "key name") -> None:
    """Raise :class:`KeyMaterialError` unless ``name`` is a valid C2SP signed-note key name.

    Names must be non-empty and contain no Unicode spaces, no ``+`` and (so that a
    note stays valid) no control characters.
    """
    bad = [ch for ch in name if ch.isspace() or ch == "+" or ord(ch) < 0x20 or ord(ch) == 0x7F]
    if not name or bad:
        why = "is empty" if not name else f"contains {bad[0]!r}"
        raise KeyMaterialError(
            f"{where} {name!r} {why}; key names must be non-empty, without spaces, '+' or "
            "control characters (c2sp.org/signed-note).",
            hint="Use a name like 'example-lab/trainer'.",
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise KeyMaterialError(f"{where} {name!r} is not valid UTF-8.") from exc


# --- which 32-byte strings are sound Ed25519 points ------------------------------------------

# Encodings of the 8 small-order Ed25519 points, canonical and not (libsodium's list),
# compared with the sign bit cleared. Under such a key OpenSSL accepts forged signatures
# (e.g. R = identity, S = 0 for every message), so no such key may be registered.
_SMALL_ORDER = frozenset(bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
))
_SMALL_ORDER_EITHER_SIGN = _SMALL_ORDER | {e[:31] + bytes([e[31] | 0x80]) for e in _SMALL_ORDER}
_FF30 = b"\xff" * 30


def is_small_order(public: bytes) -> bool:
    """Whether a 32-byte Ed25519 public key is a small-order point (a forgeable key)."""
    return len(public) == 32 and public[:31] + bytes([public[31] & 0x7F]) in _SMALL_ORDER


def is_canonical_point(enc: bytes) -> bool:
    """A 32-byte point encoding with ``y < p`` that is not a small-order point."""
    if len(enc) != 32 or enc in _SMALL_ORDER_EITHER_SIGN:
        return False
    # y >= p only when y's 255 bits are 2^255 - 19 .. 2^255 - 1: ff..ff7f with low byte >= ed
    return not (enc[31] | 0x80 == 0xFF and enc[0] >= 0xED and enc[1:31] == _FF30)


def is_sound_key(public: bytes) -> bool:
    """A canonical point of prime order: what every honestly generated public key is.

    The subgroup check needs libsodium (PyNaCl); without it only the encoding and
    small-order checks apply.
    """
    if not is_canonical_point(public):
        return False
    try:
        from nacl.bindings import crypto_core_ed25519_is_valid_point
    except ImportError:  # pragma: no cover - PyNaCl is a dependency
        return True
    return bool(crypto_core_ed25519_is_valid_point(public))


def _b64decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyMaterialError(f"{where}: {text!r} is not standard base64.") from exc


def _parse_hex_id(text: str, where: str) -> bytes:
    if len(text) != 8 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise KeyMaterialError(f"{where}: key ID {text!r} is not 8 hexadecimal digits.")
    return bytes.fromhex(text)


@dataclass(frozen=True)
class VerifierKey:
    """A named Ed25519 public key (signature type 0x01) that verifies notes and envelopes."""

    name: str
    key_id: bytes
    public: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public) != 32:
            raise KeyMaterialError(
                f"verifier key {self.name!r}: Ed25519 public key is {len(self.public)} bytes, "
                "expected 32."
            )
        want = key_id(self.name, self.public)
        if self.key_id != want:
            raise KeyMaterialError(
                f"verifier key {self.name!r}: key ID {self.key_id.hex()} does not match the "
                f"name and public key (expected {want.hex()}).",
                hint="The key text was altered or copied incompletely; copy it again.",
            )

    @classmethod
    def from_public(cls, name: str, public: bytes) -> VerifierKey:
        """The verifier key for a raw 32-byte Ed25519 public key under ``name``."""
        check_key_name(name)
        return cls(name, key_id(name, public), bytes(public))

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Parse ``name+hexid+base64(0x01||pubkey)``; the ID must match name and key."""
        text = text.strip()
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise KeyMaterialError(
                f"verifier key {text!r} is not of the form name+hexid+base64key.",
                hint="A verifier key looks like 'example-lab/trainer+c74f20a3+AR...'.",
            )
        name, hex_id, b64 = parts
        check_key_name(name, "verifier key name")
        kid = _parse_hex_id(hex_id, f"verifier key {name!r}")
        raw = _b64decode(b64, f"verifier key {name!r}")
        if not raw or raw[0] != SIG_TYPE_ED25519:
            kind = f"0x{raw[0]:02x}" if raw else "none"
            raise KeyMaterialError(
                f"verifier key {name!r} has signature type {kind}; only Ed25519 (0x01) is "
                "supported here (witness keys of type 0x04 are cosignature verifiers)."
            )
        if len(raw) != 33:
            raise KeyMaterialError(
                f"verifier key {name!r}: Ed25519 public key is {len(raw) - 1} bytes, expected 32."
            )
        return cls(name, kid, raw[1:])

    def text(self) -> str:
        """The key as ``name+hexid+base64(0x01||pubkey)``."""
        b64 = base64.b64encode(bytes([SIG_TYPE_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    @property
    def keyid(self) -> str:
        """``name+hexid``: how a DSSE signature names this key."""
        return f"{self.name}+{self.key_id.hex()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is a valid Ed25519 signature of ``message`` by this key."""
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def __str__(self) -> str:
        return self.text()


class SigningKey:
    """A named Ed25519 private key. Its text form is the Go ``note`` private key format."""

    __slots__ = ("_private", "_vkey", "name")

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self.name = name
        self._private = private
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._vkey = VerifierKey.from_public(name, public)

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        """A fresh random key named ``name``."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> SigningKey:
        """The key with the given 32-byte RFC 8032 seed."""
        if len(seed) != 32:
            raise KeyMaterialError(f"signing key {name!r}: seed is {len(seed)} bytes, expected 32.")
        return cls(name, Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @property
    def vkey(self) -> VerifierKey:
        """The public half, to give to verifiers."""
        return self._vkey

    @property
    def key_id(self) -> bytes:
        """The 4-byte C2SP key ID of the public key."""
        return self._vkey.key_id

    @property
    def public(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._vkey.public

    def seed(self) -> bytes:
        """The raw 32-byte private seed (keep it secret)."""
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._private.sign(message)

    def text(self) -> str:
        """``PRIVATE+KEY+name+hexid+base64(0x01||seed)``."""
        b64 = base64.b64encode(bytes([SIG_TYPE_ED25519]) + self.seed()).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{b64}"

    @classmethod
    def parse(cls, text: str, *, where: str = "signing key") -> SigningKey:
        """Parse the text form; the key ID must match the derived public key."""
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            raise KeyMaterialError(
                f"{where} does not start with 'PRIVATE+KEY+'.",
                hint="A signing key looks like 'PRIVATE+KEY+example-lab/trainer+c74f20a3+AY...'.",
            )
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise KeyMaterialError(f"{where} is not of the form PRIVATE+KEY+name+hexid+base64seed.")
        name, hex_id, b64 = parts
        check_key_name(name, f"{where} name")
        kid = _parse_hex_id(hex_id, f"{where} {name!r}")
        raw = _b64decode(b64, f"{where} {name!r}")
        if not raw or raw[0] != SIG_TYPE_ED25519:
            raise KeyMaterialError(f"{where} {name!r} is not an Ed25519 (type 0x01) key.")
        if len(raw) != 33:
            raise KeyMaterialError(
                f"{where} {name!r}: Ed25519 seed is {len(raw) - 1} bytes, expected 32."
            )
        key = cls.from_seed(name, raw[1:])
        if key.key_id != kid:
            raise KeyMaterialError(
                f"{where} {name!r}: key ID {kid.hex()} does not match the key "
                f"(expected {key.key_id.hex()}).",
                hint="The key text was altered or copied incompletely.",
            )
        return key

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the key to ``path`` atomically with mode 0600.

        Refuses to replace an existing file unless ``overwrite`` is true; on any
        failure nothing is left behind.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise KeyMaterialError(
                f"key file {path} already exists; refusing to overwrite it.",
                hint="Choose another path, or pass overwrite=True if you mean to replace it.",
            )
        directory = path.parent if str(path.parent) else Path(".")
        if not directory.is_dir():
            raise KeyMaterialError(f"cannot write key file {path}: directory {directory} missing.")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.text() + "\n")
                f.flush()
                os.fsync(f.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                # link() fails if the target appeared meanwhile: no silent clobbering.
                os.link(tmp, path)
                os.unlink(tmp)
            _fsync_dir(directory)
        except FileExistsError as exc:
            _unlink_quietly(tmp)
            raise KeyMaterialError(
                f"key file {path} already exists; refusing to overwrite it."
            ) from exc
        except OSError as exc:
            _unlink_quietly(tmp)
            raise KeyMaterialError(f"cannot write key file {path}: {exc.strerror or exc}.") from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a key file written by :meth:`save` (or by Go's ``note.GenerateKey``).

        Refuses a missing file, one readable or writable by group or others, and
        malformed content.
        """
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise KeyMaterialError(
                f"key file {path} does not exist.",
                hint="Check the path, or generate a key first.",
            ) from exc
        except OSError as exc:
            raise KeyMaterialError(f"cannot read key file {path}: {exc.strerror or exc}.") from exc
        if not stat.S_ISREG(st.st_mode):
            raise KeyMaterialError(f"key file {path} is not a regular file.")
        public = verifier_key_in(path)
        if public is not None:
            raise _not_private(path, public)
        mode = stat.S_IMODE(st.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise KeyMaterialError(
                f"key file {path} has mode {mode:04o}: it is accessible by group or others, "
                "so the private key may have leaked.",
                hint=f"Run `chmod 600 {path}` (and consider rotating the key).",
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyMaterialError(f"cannot read key file {path}: {exc}.") from exc
        return cls.parse(text, where=f"key file {path}")

    def __repr__(self) -> str:
        return f"SigningKey({self._vkey.keyid!r})"


def verifier_key_in(path: str | os.PathLike[str]) -> VerifierKey | None:
    """The verifier key a file holds, if its whole content is one (a ``.pub`` file), else None.

    Reads at most a few kilobytes and never raises: anything else (a private key, a
    missing or unreadable file, other content) gives ``None``.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
        text = raw.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if len(raw) > 4096 or not text or "\n" in text or text.startswith(_PRIVATE_PREFIX):
        return None
    try:
        return VerifierKey.parse(text)
    except KeyMaterialError:
        return None


def _not_private(path: Path, public: VerifierKey) -> KeyMaterialError:
    private = path.with_suffix(".key")
    where = (f"Use the private key file {private} instead" if private != path
             and private.is_file() else "Give the private key file (.key) written by "
             "`scalegate keys new`")
    return KeyMaterialError(
        f"key file {path} holds the verifier (public) key {public.keyid}, not a private key.",
        hint=f"{where}; verifier keys are what you share, private keys what you sign with.",
    )


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
