"""The log-level audit on real ledgers: what passes, and each kind of violation it must find."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

from scalegate.audit.logcheck import audit_log
from scalegate.audit.report import AuditReport
from scalegate.ledger import CheckedEntry
from scalegate.ledger.envelope import Envelope, sign_envelope
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.note import sign_note
from scalegate.ledger.statements import (
    ApprovalPredicate,
    KeyRevocationPredicate,
    sign_statement,
)

from .conftest import ORIGIN, T0, Clock, Lab, make_lab, rogue_append


def _audit(lab: Lab, **kw: object) -> AuditReport:
    kw.setdefault("state_path", lab.dir / "auditor.json")
    trust = kw.pop("trust", None) or lab.trust()
    return audit_log(lab.path, trust, **kw)  # type: ignore[arg-type]


def _kinds(rep: AuditReport) -> set[str]:
    return set(rep.violation_counts)


def _sql(path: Path, sql: str, args: tuple[object, ...] = ()) -> None:
    con = sqlite3.connect(path)
    con.execute(sql, args)
    con.commit()
    con.close()


def test_an_honest_witnessed_ledger_passes_and_is_remembered(lab: Lab) -> None:
    lab.pause_and_approve()
    lab.checkpoint()
    seen: list[CheckedEntry] = []
    rep = _audit(lab, on_entry=seen.append)
    assert rep.ok and rep.exit_code == 0, rep.to_json_data()
    assert all(c.ok for c in rep.checks), rep.checks
    n = lab.ledger.size
    assert rep.size == n and rep.root_hash == lab.ledger.root().hex()
    assert rep.checkpoint is not None and rep.checkpoint.size == n
    assert rep.checkpoint.cosigned_by == ["witness.example/w1", "witness.example/w2"]
    assert rep.counts["entries"] == n and rep.counts["signatures"] == n
    assert rep.counts["keys registered"] == 2 and rep.counts["runs"] == 1
    # Every entry reaches the callback in order, authentic, with its registered signer.
    assert [e.index for e in seen] == list(range(n)) and all(e.authentic for e in seen)
    assert seen[0].kind == "key" and seen[0].signer is None
    assert seen[-1].kind == "approval" and seen[-1].signer.roles == ("rso",)
    assert seen[-1].statement().predicate.role == "rso"
    assert seen[5].ref.leaf_hash == lab.ledger.entry(5).leaf_hash.hex()
    state = json.loads((lab.dir / "auditor.json").read_text())
    log = f"{ORIGIN} {lab.log_key.vkey.text()}"  # a log is its origin and its key
    assert [c["size"] for c in state["logs"][log]["checkpoints"]] == [n]
    # The ledger is read, never written: its file is byte-identical after an audit.
    before = lab.path.read_bytes()
    assert _audit(lab).ok
    assert lab.path.read_bytes() == before


def test_database_urls_are_read_through_sqlalchemy(lab: Lab) -> None:
    lab.checkpoint()
    by_file = _audit(lab, use_state=False)
    by_url = audit_log(f"sqlite+pysqlite:///{lab.path}", lab.trust(), use_state=False)
    assert by_file.ok and by_url.ok and by_url.root_hash == by_file.root_hash
    assert by_url.counts == by_file.counts


def test_helper_processes_agree_with_one_process(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, computes=4200)
    lab.checkpoint()
    one = _audit(lab, workers=1, use_state=False)
    seen: list[int] = []
    two = _audit(lab, workers=2, use_state=False, progress=lambda done, _: seen.append(done))
    assert one.ok and two.ok
    assert seen == sorted(seen) and seen[-1] == lab.ledger.size  # chunk by chunk, to the end
    assert (one.root_hash, one.counts) == (two.root_hash, two.counts)
    # Helpers read their chunks themselves: what they find in altered bytes is the same.
    bad = lab.copy("altered.db")
    _sql(bad, "UPDATE entries SET data = replace(data, 'eyJ', 'eyK') WHERE idx = 3000")
    _sql(bad, "DELETE FROM nodes WHERE level = 3 AND idx = 300")
    _sql(bad, "DELETE FROM entries WHERE idx = 4100")
    one = audit_log(bad, lab.trust(), use_state=False, workers=1)
    two = audit_log(bad, lab.trust(), use_state=False, workers=2)
    assert {"leaf-hash", "tree-node", "entry-missing"} <= set(one.violation_counts)
    assert one.violations == two.violations and one.counts == two.counts
    # ... and so is what a second audit may take from the state file.
    state = tmp_path / "auditor.json"
    first = audit_log(lab.path, lab.trust(), state_path=state, workers=2)
    again = audit_log(lab.path, lab.trust(), state_path=state, workers=2)
    assert first.ok and again.ok and again.counts[
        "signatures verified by an earlier audit (same bytes, same keys)"] == 4096
    lab.ledger.close()


def test_quorum_and_missing_checkpoints_are_could_not_verify(lab: Lab) -> None:
    rep = _audit(lab)
    assert rep.exit_code == 4 and "issued no checkpoint" in str(rep.failed_checks())
    lab.checkpoint(cosigners=(0,))
    rep = _audit(lab, use_state=False)
    assert rep.exit_code == 4 and not rep.violation_counts
    assert "no checkpoint carries 2 of 2" in str(rep.failed_checks())
    assert _audit(lab, trust=lab.trust(quorum=1)).ok
    # Entries appended after the witnessed checkpoint are checked but said to be uncovered.
    lab.compute(3)
    rep = _audit(lab, trust=lab.trust(quorum=1))
    assert rep.ok and "3 later entries are not yet covered" in str(rep.checks)


def test_another_log_key_in_the_trust_file_cannot_verify(lab: Lab) -> None:
    lab.checkpoint()
    trust = lab.trust().model_copy(update={"log": lab.trust().log.model_copy(
        update={"key": SigningKey.generate(ORIGIN).vkey})})
    rep = _audit(lab, trust=trust)
    assert rep.exit_code == 4 and not rep.violation_counts
    assert "is the trust file's log key this ledger's" in str(rep.checks)
    assert "differs from the trust file" in str(rep.checks)


def test_unreadable_ledger_and_state_cannot_verify(lab: Lab, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 10)
    rep = audit_log(junk, lab.trust(), use_state=False)
    assert rep.exit_code == 4 and rep.checks[0].name == "ledger readable"
    assert audit_log(tmp_path / "none.db", lab.trust(), use_state=False).exit_code == 4
    # A truncated copy: said so, and nothing is left behind next to it (-wal, -shm).
    lab.ledger.close()
    cut = tmp_path / "cut" / "cut.db"
    cut.parent.mkdir()
    cut.write_bytes(lab.path.read_bytes()[: lab.path.stat().st_size // 2])
    rep = audit_log(cut, lab.trust(), use_state=False)
    assert rep.exit_code == 4 and "is truncated" in rep.checks[0].detail
    assert sorted(p.name for p in cut.parent.iterdir()) == ["cut.db"]
    lab.ledger = Ledger.open(lab.path, log_key=lab.log_key, now=lab.clock)
    lab.checkpoint()
    state = tmp_path / "bad.json"
    state.write_text("[1, 2]")
    rep = _audit(lab, state_path=state)
    assert rep.exit_code == 4 and "does not hold a JSON object" in str(rep.failed_checks())
    assert state.read_text() == "[1, 2]"  # a damaged state is never overwritten
    state.write_text('{"version": 9, "logs": {}}')
    rep = _audit(lab, state_path=state)
    assert rep.exit_code == 4 and "not an auditor state file" in str(rep.failed_checks())


def test_roles_and_organisations(lab: Lab) -> None:
    beta_root, beta = SigningKey.generate("beta/root"), SigningKey.generate("beta/trainer")
    lab.ledger.close()
    # The log admits a second organisation; the auditor will be told to trust it or not.
    con = sqlite3.connect(lab.path)
    roots = json.loads(con.execute("SELECT value FROM meta WHERE key='org_roots'").fetchone()[0])
    con.execute("UPDATE meta SET value=? WHERE key='org_roots'",
                (json.dumps([*roots, beta_root.vkey.text()]),))
    con.commit()
    con.close()
    lab.ledger = Ledger.open(lab.path, now=lab.clock)
    lab.register(beta, ["trainer"], org="beta", root=beta_root)
    lab.compute(1, key=beta)  # beta signs acme's run
    lab.compute(1)  # acme again: the signer check's memo of clean entries is used ...
    lab.compute(2, key=beta)  # ... and never hides a violation
    lab.pause_and_approve(approver=lab.trainer, role="rso")  # a trainer claims the rso role
    lab.checkpoint()
    both = lab.trust().model_copy(update={"org_roots": {"acme": [lab.root.vkey],
                                                          "beta": [beta_root.vkey]}})
    rep = _audit(lab, trust=both, use_state=False)
    assert _kinds(rep) == {"wrong-org", "wrong-role"}, rep.violations
    assert rep.violation_counts == {"wrong-org": 3, "wrong-role": 1}
    # Only acme trusted: beta's key statement and entry are unattributable.
    rep = _audit(lab, use_state=False)
    assert _kinds(rep) == {"untrusted-root", "unregistered-signer", "wrong-role"}
    # The trust file's roles map: compute only by 'evaluator' keys.
    rep = _audit(lab, trust=both.model_copy(update={"roles": {"compute": ["evaluator"]}}),
                 use_state=False)
    assert rep.violation_counts["wrong-role"] == 1 + 24  # the approval, and every compute


def test_a_dishonest_operator_is_caught_entry_by_entry(lab: Lab) -> None:
    stranger = SigningKey.generate("acme/stranger")
    good = lab.compute_envelope(1000).to_bytes()
    env = json.loads(good)
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[5] ^= 1
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    bad_sig = Envelope.model_validate(env).to_bytes()
    i_unreg = rogue_append(lab, lab.compute_envelope(1001, stranger).to_bytes(),
                           stranger.vkey.keyid)
    i_bad = rogue_append(lab, bad_sig, lab.trainer.vkey.keyid)
    i_junk = rogue_append(lab, b'{"payload": "x"}', "x", kind="compute")
    i_type = rogue_append(lab, sign_envelope(b"{}", lab.trainer, "text/plain").to_bytes(),
                          lab.trainer.vkey.keyid)
    i_stmt = rogue_append(lab, sign_envelope(b'{"_type": "nope"}', lab.trainer).to_bytes(),
                          lab.trainer.vkey.keyid)
    lab.ledger.append(sign_statement(KeyRevocationPredicate(
        vkey=lab.trainer.vkey.text(), reason="leaked", revoked_at=lab.clock.t), lab.root))
    i_revoked = rogue_append(lab, lab.compute_envelope(1002).to_bytes(), lab.trainer.vkey.keyid)
    i_cols = rogue_append(lab, sign_statement(ApprovalPredicate(
        run_id="run-1", pause={"index": 0, "leaf_hash": "0" * 64}, role="rso", rationale="ok",
        at=T0), lab.rso).to_bytes(), lab.trainer.vkey.keyid, kind="compute")
    lab.checkpoint()
    rep = _audit(lab)
    found = {(v.kind, v.refs[0].index) for v in rep.violations if v.refs}
    assert found == {
        ("unregistered-signer", i_unreg), ("bad-signature", i_bad),
        ("envelope-malformed", i_junk), ("envelope-malformed", i_type),
        ("statement-malformed", i_stmt), ("revoked-signer", i_revoked),
        ("index-mismatch", i_cols),
    }, rep.violations
    assert rep.exit_code == 3
    assert rep.violations[0].refs[0].leaf_hash == lab.ledger.entry(i_unreg).leaf_hash.hex()
    # The tree and the checkpoint are fine: the operator's own log signed it all.
    assert {c.name for c in rep.failed_checks()} == {
        "envelopes and signatures", "signers registered, valid and not revoked",
        "derived columns (kind, run, signer)"}


def test_entry_times_are_checked_against_order_and_witnesses(lab: Lab) -> None:
    lab.checkpoint()
    n = lab.ledger.size
    original = lab.ledger.entry(n - 2).appended_at.isoformat().replace("+00:00", "Z")
    _sql(lab.path, "UPDATE entries SET appended_at = ? WHERE idx = ?",
         ("2026-02-01T00:00:00.000000Z", n - 2))
    # Backdated: out of order, and before the signer's key was valid.
    assert _kinds(_audit(lab, use_state=False)) == {"time-order", "signer-not-valid"}
    _sql(lab.path, "UPDATE entries SET appended_at = ? WHERE idx = ?", (original, n - 2))
    assert _audit(lab, use_state=False).ok
    lab.compute(2)
    lab.ledger.checkpoint()
    early = lab.witness(0)
    early._now = Clock(T0 - timedelta(days=30))  # a witness that cosigns "before" the entries
    from scalegate.audit.witness import witness_ledger

    witness_ledger(lab.ledger, early)
    witness_ledger(lab.ledger, lab.witness(1))
    rep = _audit(lab, use_state=False)
    assert _kinds(rep) == {"time-after-witness"}


def test_split_views_rollbacks_and_stale_checkpoints_against_the_state(lab: Lab) -> None:
    state = lab.dir / "auditor.json"
    lab.checkpoint()
    backup = lab.copy("backup.db")
    lab.compute(4)
    lab.checkpoint()
    assert _audit(lab, state_path=state).ok
    # The log restored from an older backup: it lost entries this auditor saw committed.
    rep = audit_log(backup, lab.trust(), state_path=state)
    assert {"log-rollback", "stale-checkpoint"} <= _kinds(rep)
    # A fork of the old state, grown differently and witnessed by fooled witnesses.
    fork_dir = lab.dir / "fork"
    fork_dir.mkdir()
    fork = Ledger.open(backup, log_key=lab.log_key, now=lab.clock)
    fork.append_many([lab.compute_envelope(700 + i) for i in range(6)])
    fork.checkpoint()
    from scalegate.audit.witness import Witness, witness_ledger

    for i, w in enumerate(lab.witnesses):
        witness_ledger(fork, Witness(fork_dir / f"w{i}.json", w, {ORIGIN: lab.log_key.vkey}))
    fork.close()
    rep = audit_log(backup, lab.trust(), state_path=state)
    assert _kinds(rep) == {"split-view"}, rep.violations
    assert rep.exit_code == 3
    # Without memory of what it saw, an auditor cannot tell: the fork is internally sound.
    assert audit_log(backup, lab.trust(), use_state=False).ok


def test_report_keeps_every_count_but_caps_what_it_lists() -> None:
    rep = AuditReport(ledger="x", origin="o")
    assert rep.ok and rep.exit_code == 0
    rep.check("something", False, "could not", verifiable=False)
    assert rep.could_not_verify and rep.exit_code == 4
    for i in range(1005):
        rep.violation("bad-signature", f"entry {i}")
    rep.violation("wrong-role", "one")
    assert rep.violations_total == 1006 and rep.exit_code == 3
    assert len([v for v in rep.violations if v.kind == "bad-signature"]) == 1000
    data = rep.to_json_data()
    assert data["violation_counts"] == {"bad-signature": 1005, "wrong-role": 1}
    assert data["exit_code"] == 3 and data["ok"] is False
    assert AuditReport.model_validate_json(rep.model_dump_json()) == rep


def test_signature_backends_agree() -> None:
    """libsodium (when installed) and OpenSSL give the same verdicts, and never a laxer one."""
    import pytest

    from scalegate.ledger import _entry_check
    from scalegate.ledger._signature_pool import check_signatures as openssl

    pytest.importorskip("nacl.bindings")
    sodium = _entry_check.check_signatures  # the whole-log check's (bulk) verifier
    key, other = SigningKey.generate("acme/a"), SigningKey.generate("acme/b")
    msg = b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    sig = key.sign(msg)
    order = (2**252 + 27742317777372353535851937790883648493).to_bytes(32, "little")
    s_plus_l = sig[:32] + (int.from_bytes(sig[32:], "little")
                           + int.from_bytes(order, "little")).to_bytes(32, "little")
    items = [
        (key.public, msg, sig),                         # valid
        (key.public, msg + b" ", sig),                  # other message
        (other.public, msg, sig),                       # other key
        (key.public, msg, sig[:-1] + bytes([sig[-1] ^ 1])),
        (key.public, msg, sig[:63]),                    # short
        (key.public, msg, s_plus_l),                    # non-canonical S (S + L)
        (key.public[:31], msg, sig),                    # short key
    ]
    assert sodium(items) == openssl(items) == [True] + [False] * 6


def test_two_logs_sharing_an_origin_are_two_logs_in_the_state(lab: Lab, tmp_path: Path) -> None:
    """Every demo workspace has the same origin but its own log key: an auditor of two of
    them with one state file must not take them for one log showing two histories."""
    state = lab.dir / "auditor.json"
    lab.checkpoint()
    assert _audit(lab, state_path=state).ok
    (tmp_path / "other").mkdir()
    other = make_lab(tmp_path / "other", computes=7)  # same ORIGIN, another log key
    try:
        other.checkpoint()
        rep = audit_log(other.path, other.trust(), state_path=state)
        assert rep.ok, rep.violations
        assert audit_log(lab.path, lab.trust(), state_path=state).ok  # each still remembered
        assert len(json.loads(state.read_text())["logs"]) == 2
    finally:
        other.ledger.close()


def test_another_logs_trust_file_cannot_verify(lab: Lab, tmp_path: Path) -> None:
    """Audited with the trust file of another log, a ledger is not that log: the audit says
    so and cannot verify (4), rather than listing every signer as unregistered (3)."""
    lab.checkpoint()
    (tmp_path / "other").mkdir()
    other = make_lab(tmp_path / "other", computes=2)
    try:
        rep = audit_log(lab.path, other.trust(), use_state=False)
        assert rep.exit_code == 4 and not rep.violations, rep.violations
        (check,) = [c for c in rep.checks if c.name == "the trust file's log"]
        assert not check.ok and "log key" in check.detail and "not the log" in check.detail
    finally:
        other.ledger.close()


def test_replaying_a_run_the_log_does_not_have_cannot_verify(lab: Lab) -> None:
    from scalegate.audit.runcheck import audit_ledger

    lab.checkpoint()
    audit = audit_ledger(lab.path, lab.trust(), use_state=False, run_ids=["run-9"])
    (check,) = [c for c in audit.report.checks if c.name == "runs asked for"]
    assert not check.ok and "'run-9'" in check.detail and "run-1" in check.detail
    assert audit.report.exit_code == 4 and not audit.runs


def test_a_state_file_of_an_earlier_version_is_not_forgotten(lab: Lab) -> None:
    """Earlier versions named a log by its origin alone: what such a file remembers still
    counts (here a different root at a size the auditor saw: a split view), but only the
    checkpoints the trusted log key signed."""
    state = lab.dir / "auditor.json"
    lab.checkpoint()
    assert _audit(lab, state_path=state).ok
    data = json.loads(state.read_text())
    (rec,) = data["logs"].values()
    rec["checkpoints"][0]["root_hash"] = base64.b64encode(b"\x01" * 32).decode()
    data["logs"] = {ORIGIN: rec}  # as an earlier version wrote it
    state.write_text(json.dumps(data))
    assert _kinds(_audit(lab, state_path=state)) == {"split-view"}
    other = SigningKey.generate(ORIGIN)  # a note the trusted log key did not sign: ignored
    rec["checkpoints"][0]["note"] = sign_note(rec["checkpoints"][0]["note"].split("\n\n")[0]
                                              + "\n", [other])
    data["logs"] = {ORIGIN: rec}
    state.write_text(json.dumps(data))
    assert _audit(lab, state_path=state).ok
