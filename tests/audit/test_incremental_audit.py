"""An audit that goes on where the last one stopped finds exactly what a whole audit of
the same log finds, reads only what is new, and starts afresh whenever it cannot go on."""

from __future__ import annotations

import random
import re
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from scalegate.audit import IncrementalAudit, audit_ledger
from scalegate.audit.runcheck import LedgerAudit
from scalegate.ledger import KeyRevocationPredicate, sign_statement
from scalegate.ledger.keys import SigningKey
from scalegate.policy import load_policy

from .conftest import T0, Lab, make_lab, rogue_append
from .runworld import World, new_world

CHUNK = 2048
KEY = b"k" * 32
LAWS = [load_policy("eu-ai-act"), load_policy("ca-sb53")]
_SEEN_AT = re.compile(r" on \d{4}-\d\d-\d\dT[\d:.]+Z")  # when each state file saw it


def _verdict(a: LedgerAudit) -> tuple[Any, ...]:
    """Everything an audit concludes (not where its state file lies)."""
    r = a.report
    return (sorted((v.kind, _SEEN_AT.sub("…", v.message), tuple(x.index for x in v.refs), v.run_id)
                   for v in r.violations), r.violation_counts,
            [(c.name, c.ok, c.detail) for c in r.checks if c.name != "auditor state"],
            {k: n for k, n in r.counts.items() if "earlier audit" not in k},
            [x.to_json_data() for x in a.runs], [h.model_dump() for h in a.held_to],
            r.root_hash, r.size, r.exit_code)


def _both(path: Path, trust: Any, inc: IncrementalAudit, tmp: Path, **kw: Any
          ) -> tuple[LedgerAudit, LedgerAudit]:
    kw.setdefault("now", T0 + timedelta(days=400))  # one audit time for both
    kw.setdefault("held_to", LAWS)  # as the registry holds every run
    whole = audit_ledger(path, trust, state_path=tmp / "whole.json", workers=1, **kw)
    going = inc.audit(path, trust, state_path=tmp / "going.json", workers=1, **kw)
    return whole, going


def _dishonest(lab: Lab, rng: random.Random) -> None:
    """One of the ways a log operator or trainer cheats, at random."""
    what = rng.randrange(4)
    if what == 0:  # the same statement twice
        env = lab.compute_envelope(rng.randrange(1, 50)).to_bytes()
        rogue_append(lab, env, lab.trainer.vkey.keyid)
    elif what == 1:
        rogue_append(lab, b'{"payload": "x"}', "x")
    elif what == 2:
        stranger = SigningKey.generate("acme/stranger")
        rogue_append(lab, lab.compute_envelope(10**6, stranger).to_bytes(),
                     stranger.vkey.keyid)
    else:
        env = lab.compute_envelope(10**6 + rng.randrange(10**6)).to_bytes()
        rogue_append(lab, env, lab.rso.vkey.keyid)  # signer column lies


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_audit_agrees_with_a_whole_one_and_reads_only_what_is_new(
        tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lab = make_lab(tmp_path, computes=3)
    inc = IncrementalAudit()
    read_before = 0
    for rnd in range(7):
        lab.compute(rng.choice([1, 5, 900, CHUNK + 3]))
        if rng.random() < 0.4:
            _dishonest(lab, rng)
        if rng.random() < 0.5:
            lab.checkpoint(cosigners=rng.choice([(0, 1), (0,)]))
        if rnd == 5:  # a key revoked between two audits: a later statement by it is caught
            lab.pause_and_approve()
            lab.ledger.append(sign_statement(KeyRevocationPredicate(
                vkey=lab.rso.vkey.text(), reason="left", revoked_at=lab.clock.t), lab.root))
            rogue_append(lab, lab.compute_envelope(10**8, lab.rso).to_bytes(),
                         lab.rso.vkey.keyid)
        size_before = inc.size
        whole, going = _both(lab.path, lab.trust(), inc, tmp_path, now=lab.clock.t)
        assert _verdict(going) == _verdict(whole), f"round {rnd}"
        assert inc.read_from == size_before - size_before % CHUNK  # its last chunk, and on
        assert inc.size == lab.ledger.size
        read_before = max(read_before, inc.read_from)
    assert read_before > 0  # the log outgrew a chunk: whole chunks were not read again
    lab.ledger.close()


def test_a_supervised_run_paused_and_resumed_audits_the_same_step_by_step(
        tmp_path: Path) -> None:
    w: World = new_world(tmp_path)
    inc = IncrementalAudit()

    def check() -> LedgerAudit:
        w.witness()
        whole, going = _both(w.ws.ledger_path, w.trust(), inc, tmp_path,
                             now=w.clock.t + timedelta(days=1))
        assert _verdict(going) == _verdict(whole)
        return going

    w.train(lambda d: d.verdict == "alert")
    check()
    w.train(lambda d: False)
    paused = check()
    assert paused.runs[0].replay is not None and paused.runs[0].replay.state is not None
    assert paused.runs[0].replay.state.active_pause is not None
    w.more_compute(3)  # training during the pause: caught as the whole audit catches it
    caught = check()
    assert "training-during-pause" in caught.report.violation_counts
    w.attest()
    w.approve("rso", ceiling="2x")
    w.approve("board")
    w.honest_resume()
    check()
    w.close()


def test_a_saved_fold_goes_on_after_a_restart_and_a_forged_one_is_never_loaded(
        lab: Lab, tmp_path: Path) -> None:
    lab.compute(CHUNK + 10)
    lab.checkpoint()
    inc = IncrementalAudit()
    inc.audit(lab.path, lab.trust(), workers=1, state_path=tmp_path / "s.json")
    saved = tmp_path / "fold.bin"
    inc.save(saved, KEY)
    lab.compute(20)
    lab.checkpoint()
    again = IncrementalAudit.load(saved, KEY)
    assert again.size == CHUNK + 10 + 23
    whole, going = _both(lab.path, lab.trust(), again, tmp_path)
    assert again.read_from == CHUNK and _verdict(going) == _verdict(whole)
    # Under another key, or altered by one byte, the file is not unpickled: a fresh fold.
    assert IncrementalAudit.load(saved, b"x" * 32).size == 0
    data = bytearray(saved.read_bytes())
    data[-5] ^= 1
    saved.write_bytes(bytes(data))
    assert IncrementalAudit.load(saved, KEY).size == 0
    assert IncrementalAudit.load(tmp_path / "none.bin", KEY).size == 0


def test_another_trust_file_or_a_shrunk_log_means_a_whole_audit(lab: Lab,
                                                                tmp_path: Path) -> None:
    lab.compute(CHUNK + 10)
    lab.checkpoint()
    inc = IncrementalAudit()
    inc.audit(lab.path, lab.trust(), workers=1, state_path=tmp_path / "a.json")
    # Roles the trust file adds change who may sign what: every entry is judged again.
    stricter = lab.trust(roles={"compute": ["rso"]})
    whole, going = _both(lab.path, stricter, inc, tmp_path)
    assert inc.read_from == 0 and _verdict(going) == _verdict(whole)
    assert going.report.violation_counts["wrong-role"] > CHUNK
    # A log that lost its last entries is read whole, and the loss is reported.
    lab.ledger.close()
    con = sqlite3.connect(lab.path)
    con.execute("DELETE FROM entries WHERE idx >= ?", (CHUNK,))
    con.commit()
    con.close()
    whole, going = _both(lab.path, stricter, inc, tmp_path)
    assert inc.read_from == 0 and _verdict(going) == _verdict(whole)
    assert not going.report.ok
