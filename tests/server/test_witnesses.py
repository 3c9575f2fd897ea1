"""Witnesses over HTTP and publication gated on them, with real processes: a log and two
`scalegate witness serve` witnesses; a checkpoint is published only once both cosign; a
witness that is down delays publication and never blocks appends; a forked tree shown to
a witness is refused and kept as evidence."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scalegate.errors import WitnessConflict, WitnessRefused
from scalegate.ledger import (
    Checkpoint,
    ComputePredicate,
    CosignatureVerifier,
    KeyPredicate,
    Ledger,
    SigningKey,
    cosignatures,
    parse_note,
    sign_statement,
    verify_note,
)
from scalegate.ledger.tlog_proof import LeafHash, verify_receipt
from scalegate.server import HttpWitness

from .conftest import T0, make_lab
from .serving import SCALEGATE, free_port, get, init_witness, post, serving, witness_process

_steps = iter(range(10**6, 10**9))


def _compute(key: SigningKey) -> bytes:
    return sign_statement(ComputePredicate(
        run_id="witnessed", step=next(_steps), tokens=1.0, flop_by_phase={"pretraining": 1.0},
        effective_flop=1.0, method="6ND", at=datetime.now(UTC)), key).to_bytes()


def _published(url: str) -> tuple[int, str]:
    status, _, body = get(url + "checkpoint")
    if status != 200:
        return -1, ""
    note = body.decode()
    return Checkpoint.parse(parse_note(note)[0]).size, note


def _wait_for(url: str, size: int, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got, note = _published(url)
        if got >= size:
            return note
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint of size {size} was published within {seconds} s")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, object]]:
    lab = make_lab(tmp_path, 40)
    lab.ledger.close()
    log_vkey = lab.log_key.vkey.text()
    verifiers, states = [], []
    for name in ("w1", "w2"):
        verifiers.append(CosignatureVerifier.parse(init_witness(tmp_path, name, log_vkey)))
        states.append(tmp_path / f"{name}.json")
    ports = [free_port(), free_port()]
    with ExitStack() as stack:
        procs = [stack.enter_context(witness_process(s, p)) for s, p in zip(states, ports,
                                                                             strict=True)]
        urls = [f"http://127.0.0.1:{p}/" for p in ports]
        url, _ = stack.enter_context(serving(
            lab.path, "--checkpoint-interval", "1s", "--witness-timeout", "3s",
            *(x for u, n in zip(urls, ("w1", "w2"), strict=True)
              for x in ("--witness", f"{u}={tmp_path / (n + '.pub')}"))))
        yield {"lab": lab, "url": url, "verifiers": verifiers, "states": states,
               "ports": ports, "procs": procs, "stack": stack}


def test_a_checkpoint_is_published_once_both_witnesses_cosign(world: dict) -> None:
    lab, url, verifiers = world["lab"], world["url"], world["verifiers"]
    note = _wait_for(url, 40)
    opened = verify_note(note, [lab.log_key.vkey, *verifiers])
    assert {c.name for c in cosignatures(opened)} == {v.name for v in verifiers}
    status, _, body = post(url + "add?wait=proof", _compute(lab.trainer))
    assert status == 200, body
    got = json.loads(body)
    proof = verify_receipt(got["receipt"], LeafHash(bytes.fromhex(got["leaf_hash"])),
                           lab.log_key.vkey, verifiers, 2)
    assert proof.index == got["index"]


def test_a_witness_that_is_down_delays_publication_never_appends(world: dict) -> None:
    lab, url = world["lab"], world["url"]
    _wait_for(url, 40)
    world["procs"][1].kill()
    world["procs"][1].wait(timeout=10)
    before, _ = _published(url)
    for _ in range(5):  # appends go on
        assert post(url + "add", _compute(lab.trainer))[0] == 200
    time.sleep(5)  # a round or two of asking, each timing out on the dead witness
    assert _published(url)[0] == before  # the previous checkpoint stays published
    status, _, _ = post(url + "add?wait=proof", _compute(lab.trainer))
    assert status in (200, 503)  # no hang: an answer either way
    with witness_process(world["states"][1], world["ports"][1]):
        _wait_for(url, before + 5)  # back: the waiting checkpoint is cosigned and published


def test_a_forked_tree_shown_to_a_witness_is_refused_and_kept(world: dict,
                                                              tmp_path: Path) -> None:
    lab, url, verifiers = world["lab"], world["url"], world["verifiers"]
    _wait_for(url, 40)
    # The same log key signs another history under the same origin: a split view.
    root, trainer = SigningKey.generate("acme/root"), SigningKey.generate("acme/trainer")
    forked = Ledger.create(tmp_path / "fork.db", lab.ledger.origin, tmp_path / "log.key",
                           [root.vkey])
    forked.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="acme",
                                              roles=["trainer"], valid_from=T0), root))
    forked.append_many([_compute(trainer) for _ in range(59)])
    note = forked.checkpoint()
    w = HttpWitness(f"http://127.0.0.1:{world['ports'][0]}/", verifiers[0])
    with pytest.raises(WitnessConflict) as conflict:  # a first request learns its size
        w.add_checkpoint(0, [], note)
    old = conflict.value.size
    assert old >= 40
    with pytest.raises(WitnessRefused) as refused:
        w.add_checkpoint(old, forked.consistency_proof(old, 60), note)
    assert refused.value.status == 422
    forked.close()
    state = json.loads(world["states"][0].read_text())
    assert state["evidence"], "the witness kept no evidence of the split view"
    assert _published(url)[0] >= 40  # the real log goes on being published


def test_a_witness_names_its_size_as_the_spec_says(world: dict) -> None:
    url = world["url"]
    note = _wait_for(url, 40).encode()
    status, headers, body = post(f"http://127.0.0.1:{world['ports'][0]}/add-checkpoint",
                                 b"old 0\n\n" + note, "text/plain")
    assert status == 409 and headers["content-type"] == "text/x.tlog.size"
    assert int(body.decode().strip()) >= 40


def test_one_witness_named_twice_is_refused(world: dict, tmp_path: Path) -> None:
    lab = world["lab"]
    w1 = f"http://127.0.0.1:{world['ports'][0]}/"
    for second in (f"http://127.0.0.1:{world['ports'][1]}/={tmp_path / 'w1.pub'}",
                   f"{w1}={tmp_path / 'w2.pub'}"):
        res = subprocess.run([SCALEGATE, "serve", "--ledger", str(lab.path), "--listen",
                              f"127.0.0.1:{free_port()}", "--witness",
                              f"{w1}={tmp_path / 'w1.pub'}", "--witness", second],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode != 0 and "already named" in res.stderr, res.stderr


def test_verify_of_a_served_log_weighs_its_witnesses(world: dict, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from scalegate.audit import TrustedLog, TrustFile

    lab, url, verifiers = world["lab"], world["url"], world["verifiers"]
    envs = [_compute(lab.trainer) for _ in range(200)]
    with ThreadPoolExecutor(16) as pool:  # writers submitting at once
        assert {s for s, _, _ in pool.map(lambda e: post(url + "add", e), envs)} == {200}
    _wait_for(url, 240)
    with Ledger.open(lab.path) as led:
        roots = list(led.org_roots)
    trust = TrustFile(log=TrustedLog(origin=lab.ledger.origin, key=lab.log_key.vkey),
                      org_roots={"acme": roots}, witness_quorum=2,
                      witnesses={v.name: v for v in verifiers})
    (tmp_path / "trust.yaml").write_text(trust.to_yaml())
    res = subprocess.run([SCALEGATE, "verify", "--ledger", url, "--trust",
                          str(tmp_path / "trust.yaml"), "--no-state", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    report = json.loads(res.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    witnessed = checks["witnessed checkpoint"]
    assert witnessed["ok"] and "cosigned by 2 of 2" in witnessed["detail"], witnessed
    assert "size 240" in witnessed["detail"] and report["size"] == 240, witnessed
    assert report["ledger"].startswith(url + " (mirror "), report["ledger"]
