"""POST /add against a real `scalegate serve`: admission exactly as `ledger append`, a
problem document for every refusal, receipts on request, 64 clients at once sequenced
into batches, acknowledged entries surviving SIGKILL, and the OpenAPI schema held to by
a schemathesis run."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from scalegate.ledger import (
    ComputePredicate,
    Envelope,
    Ledger,
    SigningKey,
    sign_statement,
)
from scalegate.ledger.tlog_proof import LeafHash, verify_receipt

from .conftest import Lab, make_lab
from .serving import get, post, serving

_steps = iter(range(10**9))


def compute(key: SigningKey, run: str = "run-http") -> Envelope:
    return sign_statement(ComputePredicate(
        run_id=run, step=next(_steps), tokens=1.0, flop_by_phase={"pretraining": 1.0},
        effective_flop=1.0, method="6ND", at=datetime.now(UTC)), key)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, str]]:
    lab = make_lab(tmp_path_factory.mktemp("submit"), 3)
    lab.ledger.close()
    with serving(lab.path, "--rate-limit", "1000") as (url, _):
        yield lab, url


def _problem(status: int, body: bytes) -> dict[str, object]:
    doc = json.loads(body)
    assert doc["status"] == status and doc["title"] and doc["detail"]
    return doc


def test_a_submission_is_appended_and_answered_with_its_place(site: tuple[Lab, str]) -> None:
    lab, url = site
    env = compute(lab.trainer)
    status, _, body = post(url + "add", env.to_bytes())
    assert status == 200, body
    got = json.loads(body)
    led = Ledger.open(lab.path)
    assert led.entry(got["index"]).data == env.to_bytes()
    assert led.entry(got["index"]).leaf_hash.hex() == got["leaf_hash"]
    led.close()


def test_a_receipt_on_request_verifies_offline(site: tuple[Lab, str]) -> None:
    lab, url = site
    env = compute(lab.trainer)
    status, _, body = post(url + "add?wait=proof", env.to_bytes())
    assert status == 200, body
    got = json.loads(body)
    proof = verify_receipt(got["receipt"], LeafHash(bytes.fromhex(got["leaf_hash"])),
                           lab.log_key.vkey)
    assert proof.index == got["index"]


@pytest.mark.parametrize(("name", "status", "says"), [
    ("duplicate", 409, "already logged"),
    ("not json", 400, "not valid JSON"),
    ("unregistered", 403, "not a registered key"),
    ("bad signature", 400, "does not verify"),
    ("too large", 413, "at most 65,535 bytes"),
    ("text/plain", 415, "application/json"),
])
def test_every_refusal_is_a_problem_document(site: tuple[Lab, str], name: str, status: int,
                                             says: str) -> None:
    lab, url = site
    env = compute(lab.trainer)
    ctype = "application/json"
    if name == "duplicate":
        assert post(url + "add", env.to_bytes())[0] == 200
        body = env.to_bytes()
    elif name == "not json":
        body = b'{"payload": '
    elif name == "unregistered":
        body = compute(SigningKey.generate("acme/stranger")).to_bytes()
    elif name == "bad signature":
        other = compute(lab.trainer)
        body = env.model_copy(update={"signatures": other.signatures}).to_bytes()
    elif name == "too large":
        body = b"{" + b" " * 70_000 + b"}"
    else:
        body, ctype = env.to_bytes(), "text/plain"
    got, headers, reply = post(url + "add", body, ctype)
    assert got == status, reply
    assert headers["content-type"] == "application/problem+json"
    assert says in str(_problem(status, reply)["detail"])
    if name == "duplicate":
        assert isinstance(_problem(status, reply)["index"], int)


def test_a_signer_over_the_rate_limit_hears_429(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 2)
    lab.ledger.close()
    with serving(lab.path, "--rate-limit", "1") as (url, _):
        codes = [post(url + "add", compute(lab.trainer).to_bytes())[:2] for _ in range(4)]
    assert [c for c, _ in codes[:2]] == [200, 200]  # a burst of twice the rate
    assert codes[3][0] == 429 and codes[3][1]["retry-after"] == "1"


def test_64_clients_at_once_are_sequenced_without_loss(site: tuple[Lab, str]) -> None:
    lab, url = site
    envs = [compute(lab.trainer, f"run-{i % 8}") for i in range(640)]
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda e: post(url + "add", e.to_bytes()), envs))
    assert all(a[0] == 200 for a in answers), [a for a in answers if a[0] != 200][:2]
    indices = [json.loads(a[2])["index"] for a in answers]
    assert len(set(indices)) == 640
    led = Ledger.open(lab.path)
    for env, i in zip(envs, indices, strict=True):
        assert led.entry(i).data == env.to_bytes()
    assert led.verify(workers=1).ok
    led.close()


def test_acknowledged_entries_survive_sigkill(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 2)
    lab.ledger.close()
    acked: list[tuple[int, str]] = []
    lock = threading.Lock()
    with serving(lab.path) as (url, proc):
        def submit(env: Envelope) -> None:
            try:
                status, _, body = post(url + "add", env.to_bytes())
            except OSError:
                return  # the server died before answering: not acknowledged
            if status == 200:
                with lock:
                    acked.append((json.loads(body)["index"], json.loads(body)["leaf_hash"]))

        envs = [compute(lab.trainer) for _ in range(400)]
        with ThreadPoolExecutor(32) as pool:
            for i, env in enumerate(envs):
                pool.submit(submit, env)
                if i == 250:
                    while len(acked) < 50:
                        threading.Event().wait(0.01)
                    helpers = _children(proc.pid)  # the writer process among them
                    os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    assert helpers, "serve appends in a process of its own"
    deadline = time.monotonic() + 10  # no orphan goes on holding the ledger
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in helpers)
    assert len(acked) >= 50
    led = Ledger.open(lab.path)
    for index, leaf in acked:
        assert led.entry(index).leaf_hash.hex() == leaf
    assert led.verify(workers=1).ok
    led.close()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- the OpenAPI schema, held to by schemathesis ------------------------------------------------


def test_the_api_keeps_to_its_schema_and_never_answers_5xx(site: tuple[Lab, str]) -> None:
    """Every operation in /openapi.json, with generated requests (valid and not): no 5xx,
    status codes, content types and bodies as the schema documents them."""
    api = schemathesis.openapi.from_url(site[1] + "openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/add", "/checkpoint", "/log.vkey", "/"}
    for op in operations:
        @given(op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def call(case: schemathesis.Case) -> None:
            # A schema cannot say "validly signed by a registered key": a well-formed
            # envelope is still refused (400/403) unless it is; every other check holds.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        call()


@given(st.text(alphabet="0123456789x./entris%-_ ", max_size=40))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
def test_any_tile_path_gets_a_tile_or_a_problem_never_a_5xx(path: str) -> None:
    url = _URL[0] + "tile/" + urllib.parse.quote(path, safe="/.")
    status, headers, body = get(url)
    assert status in (200, 400, 404), (path, status, body)
    if status != 200:
        assert headers["content-type"] == "application/problem+json"


_URL: list[str] = []


@pytest.fixture(autouse=True)
def _url(site: tuple[Lab, str]) -> None:
    _URL[:] = [site[1]]


def test_ledger_append_submits_to_a_served_log(site: tuple[Lab, str], tmp_path: Path) -> None:
    import subprocess

    from .serving import SCALEGATE

    lab, url = site
    files = []
    for name in ("a", "b"):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_bytes(compute(lab.trainer).to_bytes())
    res = subprocess.run([SCALEGATE, "ledger", "append", *map(str, files), "--ledger", url],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count(": entry ") == 2
    again = subprocess.run([SCALEGATE, "ledger", "append", str(files[0]), "--ledger", url],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already logged" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr


def test_ledger_show_reads_a_served_log_through_its_mirror(site: tuple[Lab, str],
                                                          tmp_path: Path) -> None:
    import subprocess

    from .serving import SCALEGATE

    lab, url = site
    assert post(url + "add?wait=proof", compute(lab.trainer).to_bytes())[0] == 200
    remote = subprocess.run([SCALEGATE, "ledger", "show", "--json", "--ledger", url,
                             "--log-key", lab.log_key.vkey.text()],
                            capture_output=True, text=True, timeout=60)
    assert remote.returncode == 0, remote.stderr
    local = subprocess.run([SCALEGATE, "ledger", "show", "--json", "--ledger", str(lab.path)],
                           capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in remote.stdout.splitlines()]
    mine = [json.loads(line) for line in local.stdout.splitlines()][:len(rows)]
    assert rows and all(r.pop("appended_at") is None for r in rows)
    for m in mine:
        m.pop("appended_at")
    assert rows == mine
    fresh = {**os.environ, "SCALEGATE_MIRRORS": str(tmp_path / "fresh")}
    tofu = subprocess.run([SCALEGATE, "ledger", "show", "--ledger", url, "-n", "2"],
                          capture_output=True, text=True, timeout=60, env=fresh)
    assert tofu.returncode == 0 and "on first use" in tofu.stderr, tofu.stderr
    again = subprocess.run([SCALEGATE, "ledger", "show", "--ledger", url, "-n", "2"],
                           capture_output=True, text=True, timeout=60, env=fresh)
    assert again.returncode == 0 and "first use" not in again.stderr, again.stderr
    wrong = subprocess.run([SCALEGATE, "ledger", "show", "--ledger", url, "--log-key",
                            SigningKey.generate(lab.ledger.origin).vkey.text()],
                           capture_output=True, text=True, timeout=60, env=fresh)
    assert wrong.returncode != 0 and "pinned" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_forged_envelopes_in_a_batch_fail_alone_and_spend_no_one_s_allowance(
        tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 2)
    lab.ledger.close()
    forger = SigningKey.generate("acme/trainer")  # claims the trainer's name, not its key
    with serving(lab.path, "--rate-limit", "2") as (url, _):
        forged = [compute(forger).model_copy(update={"signatures": [
            s.model_copy(update={"keyid": lab.trainer.vkey.keyid})
            for s in compute(forger).signatures]}).to_bytes() for _ in range(6)]
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda b: post(url + "add", b)[0], forged))
        assert set(got) == {400}  # a bad signature each, never a 429 from someone's bucket
        assert post(url + "add", compute(lab.trainer).to_bytes())[0] == 200
    (tmp_path / "mixed").mkdir()
    lab2 = make_lab(tmp_path / "mixed", 2)
    lab2.ledger.close()
    with serving(lab2.path) as (url, _):
        good = [compute(lab2.trainer).to_bytes() for _ in range(30)]
        bad = [compute(SigningKey.generate("acme/x")).to_bytes() for _ in range(4)]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda b: post(url + "add", b)[0], good + bad))
    assert answers == [200] * 30 + [403] * 4


def test_a_rate_below_one_per_second_still_admits(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 2)
    lab.ledger.close()
    with serving(lab.path, "--rate-limit", "0.2") as (url, _):
        assert post(url + "add", compute(lab.trainer).to_bytes())[0] == 200
        assert post(url + "add", compute(lab.trainer).to_bytes())[0] == 429
