"""A second audit reuses the first one's signature verdicts only for the same bytes under the
same keys (the auditor's state file), and finds exactly what a full audit finds."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from scalegate.audit.logcheck import audit_log
from scalegate.audit.report import AuditReport
from scalegate.ledger.keys import SigningKey

from .conftest import Lab, make_lab

SKIPPED = "signatures verified by an earlier audit (same bytes, same keys)"
CHUNK = 2048


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    # Verdicts are kept per aligned chunk of 2048 entries: the log needs a whole one.
    lab = make_lab(tmp_path_factory.mktemp("incremental"), computes=CHUNK + 20)
    lab.checkpoint()
    lab.ledger.close()
    return lab


def _audit(lab: Lab, state: Path, **kw: object) -> AuditReport:
    return audit_log(lab.path, kw.pop("trust", None) or lab.trust(), state_path=state,
                     workers=1, **kw)  # type: ignore[arg-type]


def test_second_audit_skips_verified_signatures_and_agrees(big: Lab, tmp_path: Path) -> None:
    state = tmp_path / "auditor.json"
    first = _audit(big, state)
    assert first.ok and SKIPPED not in first.counts
    saved = json.loads(state.read_text())["logs"]
    assert len(next(iter(saved.values()))["verified"]["tops"]) == 1
    second = _audit(big, state)
    assert second.ok and second.counts[SKIPPED] == CHUNK
    assert second.violation_counts == first.violation_counts
    assert second.counts["entries"] == first.counts["entries"]
    # Without the state file everything is checked again.
    assert SKIPPED not in _audit(big, state, use_state=False).counts


def test_altered_bytes_are_checked_again(big: Lab, tmp_path: Path) -> None:
    state = tmp_path / "auditor.json"
    assert _audit(big, state).ok
    copy = big.copy("altered.db")
    con = sqlite3.connect(copy)
    data = con.execute("SELECT data FROM entries WHERE idx = 100").fetchone()[0]
    env = json.loads(data)
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[5] ^= 1  # a signature the trainer never made, in canonical form
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    bad = json.dumps(env, sort_keys=True, separators=(",", ":")).encode()
    con.execute("UPDATE entries SET data = ? WHERE idx = 100", (bad,))
    con.commit()
    con.close()
    rep = audit_log(copy, big.trust(), state_path=state, workers=1)
    assert SKIPPED not in rep.counts  # the chunk's bytes differ: nothing reused
    assert {"bad-signature", "leaf-hash"} <= set(rep.violation_counts)


def test_other_candidate_keys_mean_a_full_check(big: Lab, tmp_path: Path) -> None:
    state = tmp_path / "auditor.json"
    assert _audit(big, state).ok
    other = SigningKey.generate("acme/root2")
    trust = big.trust().model_copy(update={"org_roots": {"acme": [big.root.vkey, other.vkey]}})
    rep = _audit(big, state, trust=trust)
    assert rep.ok and SKIPPED not in rep.counts
    assert _audit(big, state, trust=trust).counts[SKIPPED] == CHUNK  # recorded anew


def test_damaged_verdicts_in_the_state_file_cannot_verify(big: Lab, tmp_path: Path) -> None:
    state = tmp_path / "auditor.json"
    assert _audit(big, state).ok
    data = json.loads(state.read_text())
    next(iter(data["logs"].values()))["verified"]["clean"] = "not base64 zlib"
    state.write_text(json.dumps(data))
    rep = _audit(big, state)
    assert rep.exit_code == 4 and "damaged" in str(rep.failed_checks())
