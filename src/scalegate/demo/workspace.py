"""A self-contained workspace: an organisation's keys, a ledger, and the keys registered.

Used by ``scalegate demo`` and by tests that need a real ledger with real people in it:
an organisation root, the log operator, a trainer service, a CISO, an RSO and a board
member, each with their own Ed25519 key file (mode 0600) and registered roles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from scalegate.ledger import (
    KeyPredicate,
    Ledger,
    SigningKey,
    now_utc,
    sign_statement,
)

#: who is in the demo organisation, and the roles each key is registered with.
PEOPLE: dict[str, tuple[str, ...]] = {
    "trainer": ("trainer",),
    "ciso": ("ciso",),
    "rso": ("rso",),
    "board": ("board",),
}


#: statement kinds only the trainer (the supervisor's key) signs in the demo.
TRAINER_KINDS = ("run", "compute", "checkpoint", "eval", "decision", "pause", "resume",
                 "notification")
#: who publishes policies in the demo organisation (the bundled demo policy and the
#: examples' name these roles under ``governance.policy_change``).
POLICY_APPROVERS = ("rso", "board")


@dataclass
class Workspace:
    """Paths and keys of a workspace; ``ledger`` is open until :meth:`close`."""

    root: Path
    org: str
    ledger: Ledger
    org_root: SigningKey
    log_key: SigningKey
    keys: dict[str, SigningKey] = field(default_factory=dict)

    @property
    def ledger_path(self) -> Path:
        return self.root / "ledger.db"

    def key(self, who: str) -> SigningKey:
        """The signing key of ``who`` (``trainer``, ``ciso``, ``rso``, ``board``)."""
        return self.keys[who]

    def close(self) -> None:
        self.ledger.close()


def create_workspace(
    root: str | Path,
    *,
    org: str = "demo-lab",
    origin: str = "demo.scalegate.example/log",
    people: dict[str, tuple[str, ...]] | None = None,
    valid_for: timedelta = timedelta(days=365),
    clock: Callable[[], datetime] | None = None,
) -> Workspace:
    """Create keys (in ``root/keys``) and a ledger (``root/ledger.db``) with every key
    registered by the organisation root. ``root`` must not already hold a ledger."""
    root = Path(root)
    keydir = root / "keys"
    keydir.mkdir(parents=True, exist_ok=True)
    org_root = _new_key(keydir, f"{org}/root")
    log_key = _new_key(keydir, f"{org}/log")
    ledger = Ledger.create(
        root / "ledger.db", origin, keydir / "log.key", [org_root.vkey], now=clock
    )
    now = (clock or now_utc)()
    keys = {}
    envelopes = []
    for who, roles in (people or PEOPLE).items():
        keys[who] = _new_key(keydir, f"{org}/{who}")
        pred = KeyPredicate(
            vkey=keys[who].vkey.text(), org=org, roles=list(roles),
            valid_from=now - timedelta(minutes=1), valid_until=now + valid_for,
        )
        envelopes.append(sign_statement(pred, org_root))
    ledger.append_many(envelopes)
    _write_trust(root / "trust.yaml", origin, log_key, org, org_root)
    return Workspace(root, org, ledger, org_root, log_key, keys)


def _write_trust(path: Path, origin: str, log_key: SigningKey, org: str, root: SigningKey) -> None:
    """The auditor's trust file: what a regulator would configure for this lab's log."""
    from scalegate.audit import (
        TrustedLog,
        TrustFile,
    )

    trust = TrustFile(
        log=TrustedLog(origin=origin, key=log_key.vkey),
        org_roots={org: [root.vkey]},
        # Who may sign what (DESIGN.md's table); attestations and approvals are checked
        # against the run's policy by replay. Policies are published by their approvers
        # (`scalegate policy publish`), not by the trainer.
        roles={**{kind: ["trainer"] for kind in TRAINER_KINDS},
               "policy": list(POLICY_APPROVERS)},
    )
    path.write_text(trust.to_yaml())


def _new_key(keydir: Path, name: str) -> SigningKey:
    key = SigningKey.generate(name)
    key.save(keydir / f"{name.split('/', 1)[1]}.key")
    (keydir / f"{name.split('/', 1)[1]}.pub").write_text(key.vkey.text() + "\n")
    return key
