"""The registry follows real served logs: it verifies and audits them, shows a pause the
way a journalist would link it, says when a log is unreachable, stale or showing a split
view, keeps what it found across restarts, and refuses a bad configuration clearly."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from scalegate.audit import IncrementalAudit, load_trust
from scalegate.demo.workspace import create_workspace
from scalegate.errors import RegistryError
from scalegate.governance import publish_policy
from scalegate.ledger import ComputePredicate, CosignatureVerifier, Ledger, sign_statement
from scalegate.policy import load_policy
from scalegate.registry import Monitor, RegistryStore, load_config
from scalegate.registry.web import create_registry_app
from scalegate.server import publish_tiles
from server.serving import SCALEGATE, serving
from server.test_remote import STEP_FLOP, _rebuild_nodes, _supervisor

pytestmark = pytest.mark.slow


def sh(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([SCALEGATE, *args], capture_output=True, text=True, timeout=180,
                         cwd=cwd)
    assert "Traceback" not in res.stderr, res.stderr
    return res


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab whose run paused itself, its log cosigned by a witness, and a trust file."""
    root = tmp_path_factory.mktemp("lab")
    ws = create_workspace(root / "ws")
    publish_policy(ws.ledger, ws.key("rso"), load_policy("demo"))  # as its approvers do
    sup = _supervisor(ws.ledger, ws.key("trainer"), root)
    for _ in range(2000):
        if sup.step(tokens=1000, flop=STEP_FLOP).verdict == "pause":
            break
    ws.ledger.checkpoint()
    ws.close()
    sh("keys", "new", "witness.example/w1", "--out", str(root / "w1.key"))
    log_vkey = ws.log_key.vkey.text()
    w1 = sh("witness", "init", "--key", str(root / "w1.key"), "--log", log_vkey, "--origin",
            ws.ledger.origin, "--state", str(root / "w1.json")).stdout.strip().splitlines()[-1]
    assert sh("witness", "cosign", "--state", str(root / "w1.json"), "--ledger",
                       str(root / "ws" / "ledger.db")).returncode == 0
    trust = root / "ws" / "trust.yaml"
    with_witness = load_trust(trust).model_copy(update={
        "witnesses": {"witness.example/w1": CosignatureVerifier.parse(w1)}, "witness_quorum": 1})
    trust.write_text(with_witness.to_yaml())
    return root


def _config(path: Path, logs: list[tuple[str, str, Path]], stale: str = "1h") -> Path:
    lines = ["logs:"]
    for name, url, trust in logs:
        lines += [f"  - name: {name}", f"    url: {url}", f"    trust: {trust}"]
    path.write_text("\n".join(lines) + f"\ninterval: 30s\nstale_after: {stale}\n")
    return path


@pytest.fixture(scope="module")
def served(lab: Path) -> Iterator[str]:
    with serving(lab / "ws" / "ledger.db", "--checkpoint-interval", "1h") as (url, _):
        yield url


def test_a_paused_run_is_shown_verified_with_its_pause_page(lab: Path, served: str,
                                                            tmp_path: Path) -> None:
    trust = lab / "ws" / "trust.yaml"
    cfg = _config(tmp_path / "registry.yaml", [("acme", served, trust),
                                               ("gone", "http://127.0.0.1:9/", trust)])
    res = sh("registry", "check", "--config", str(cfg))
    assert res.returncode == 4, res.stdout  # one log does not answer: not all verified
    store = RegistryStore(tmp_path / "registry.db")
    try:
        statuses = {g.name: g.status for g in store.logs()}
        assert statuses == {"acme": "verified", "gone": "unreachable"}, store.logs()
        client = TestClient(create_registry_app(store, tmp_path / "registry-mirrors"))
        home = client.get("/").text
        assert "acme" in home and "unreachable" in home and "paused" in home
        (run,) = client.get("/api/logs/acme").json()["runs"]
        assert run["status"] == "paused"
        (pause,) = client.get(f"/api/logs/acme/runs/{run['run_id']}").json()["pauses"]
        page = client.get(f"/logs/acme/runs/{run['run_id']}/pauses/{pause['index']}").text
        assert "still paused" in page and "security-level-demo" in page
        assert client.get(f"/api/logs/acme/runs/{run['run_id']}/pauses/{pause['index']}"
                          ).json()["honoured"] is True
        assert "<svg" in client.get(f"/logs/acme/runs/{run['run_id']}").text
        assert "witness.example/w1 (" in client.get("/logs/acme").text  # checkpoint history
        org = client.get("/api/logs/acme/orgs/demo-lab").json()
        assert {"trainer", "rso", "board", "ciso"} <= {r for k in org["keys"] for r in k["roles"]}
        assert [(p["id"], p["roles"]) for p in org["policies"]] == [("demo", ["rso"])]
        assert [r["run_id"] for r in org["runs"]] == [run["run_id"]]
        assert "demo 1" in home and "Policies, as published" in client.get(
            "/logs/acme/orgs/demo-lab").text
        receipt = client.get(f"/logs/acme/receipts/{pause['index']}")
        assert receipt.status_code == 200 and receipt.text.startswith("c2sp.org/tlog-proof")
        assert client.get("/logs/acme/receipts/99999").status_code == 404
        feed = client.get("/feed.atom")
        assert feed.headers["content-type"].startswith("application/atom+xml")
        assert f"acme:pause:{pause['index']}" in feed.text
        missing = client.get("/api/logs/nope")
        assert missing.status_code == 404 and missing.json()["status"] == 404
    finally:
        store.close()
    # A restart keeps what was found, and goes on from the mirror it holds: the log has
    # not grown, so the audit stands (checked again, not audited again).
    store = RegistryStore(tmp_path / "registry.db")
    before = store.log("acme")
    store.close()
    again = sh("registry", "check", "--config", str(cfg))
    assert again.returncode == 4 and "verified" in again.stdout
    store = RegistryStore(tmp_path / "registry.db")
    after = store.log("acme")
    store.close()
    assert before is not None and after is not None
    assert after.verified_at == before.verified_at and after.checked_at > before.checked_at


def test_a_log_no_witness_cosigned_lately_is_stale(lab: Path, served: str,
                                                   tmp_path: Path) -> None:
    cfg = _config(tmp_path / "registry.yaml", [("acme", served, lab / "ws" / "trust.yaml")],
                  stale="1s")
    time.sleep(1.5)
    config = load_config(cfg)
    store = RegistryStore(tmp_path / "r.db")
    try:
        assert Monitor(config, store, tmp_path / "work").check_all() == {"acme": "stale"}
    finally:
        store.close()


def test_a_split_view_is_caught_and_its_evidence_kept(lab: Path, tmp_path: Path) -> None:
    shutil.copy(lab / "ws" / "ledger.db", tmp_path / "lab.db")
    shutil.copy(lab / "ws" / "ledger.db", tmp_path / "fork.db")
    site = tmp_path / "site"
    with Ledger.open(tmp_path / "lab.db", log_key=lab / "ws" / "keys" / "log.key") as led:
        publish_tiles(led, site)
        keep = led.size - 3
    cfg = _config(tmp_path / "registry.yaml", [("acme", str(site), lab / "ws" / "trust.yaml")])
    store = RegistryStore(tmp_path / "r.db")
    monitor = Monitor(load_config(cfg), store, tmp_path / "work")
    try:
        assert monitor.check_all()["acme"] != "split-view"
        con = sqlite3.connect(tmp_path / "fork.db")
        for table in ("entries", "statements"):
            con.execute(f"DELETE FROM {table} WHERE idx >= ?", (keep,))
        con.execute("DELETE FROM nodes")
        con.execute("DELETE FROM checkpoints")
        con.commit()
        con.close()
        _rebuild_nodes(tmp_path / "fork.db")
        trainer = lab / "ws" / "keys" / "trainer.key"
        from scalegate.ledger import SigningKey

        with Ledger.open(tmp_path / "fork.db", log_key=lab / "ws" / "keys" / "log.key") as fork:
            for i in range(5):
                fork.append(sign_statement(ComputePredicate(
                    run_id="other", step=i, tokens=1.0, flop_by_phase={"pretraining": 1.0},
                    effective_flop=1.0, method="6ND", at=datetime.now(UTC)),
                    SigningKey.load(trainer)))
            fork.checkpoint()
            shutil.rmtree(site)
            publish_tiles(fork, site)
        assert monitor.check_all() == {"acme": "split-view"}
        client = TestClient(create_registry_app(store))
        (evidence,) = client.get("/api/logs/acme").json()["split_views"]
        assert evidence["entry"] == keep and "split view" in evidence["evidence"]
        assert "Split-view evidence" in client.get("/logs/acme").text
    finally:
        store.close()


def test_a_bad_configuration_names_every_problem(lab: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "registry.yaml"
    cfg.write_text("logs:\n  - name: Acme Lab\n    url: ftp://x\n    trust: missing.yaml\n"
                   "interval: soon\nextra: 1\n")
    with pytest.raises(RegistryError) as caught:
        load_config(cfg)
    said = caught.value.message
    assert f"{cfg}:2:" in said and "logs.0.name" in said and "interval" in said
    assert "extra" in said
    res = sh("registry", "check", "--config", str(cfg))
    assert res.returncode != 0 and "registry configuration is invalid" in res.stderr
    res = sh("registry", "check", "--config", str(tmp_path / "none.yaml"))
    assert res.returncode != 0 and "no registry configuration" in res.stderr


def test_the_api_keeps_to_its_schema_and_never_answers_5xx(lab: Path, served: str,
                                                          tmp_path: Path) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    cfg = _config(tmp_path / "registry.yaml", [("acme", served, lab / "ws" / "trust.yaml")])
    store = RegistryStore(tmp_path / "r.db")
    try:
        Monitor(load_config(cfg), store, tmp_path / "work").check_all()
        api = schemathesis.openapi.from_asgi("/openapi.json", create_registry_app(store))
        operations = [result.ok() for result in api.get_all_operations()]
        assert {op.path for op in operations} >= {"/api/logs", "/api/logs/{name}"}
        for op in operations:
            @given(op.as_strategy())
            @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None)
            def call(case: schemathesis.Case) -> None:
                case.call_and_validate()

            call()
    finally:
        store.close()


def test_a_registry_killed_keeps_what_it_reported(lab: Path, served: str,
                                                  tmp_path: Path) -> None:
    import json
    import signal
    import urllib.request

    from server.serving import free_port

    cfg = _config(tmp_path / "registry.yaml", [("acme", served, lab / "ws" / "trust.yaml")])
    port = free_port()
    proc = subprocess.Popen([SCALEGATE, "registry", "serve", "--config", str(cfg),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    reported = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and reported is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/logs") as r:
                    logs = json.loads(r.read())
                reported = next((g for g in logs if g["status"] == "verified"), None)
            except OSError:
                pass
            time.sleep(0.2)
        assert reported is not None, "the registry reported nothing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    store = RegistryStore(tmp_path / "registry.db")
    try:
        kept = store.log("acme")
        assert kept is not None and kept.status == "verified"
        assert kept.verified_at == reported["verified_at"] and kept.size == reported["size"]
    finally:
        store.close()
    with Ledger.open(tmp_path / "registry-mirrors" / "acme.db") as mirror:
        assert mirror.verify().problems == []
    # Its audit's fold was kept when it was made: a restarted registry goes on from it.
    store = RegistryStore(tmp_path / "registry.db")
    try:
        fold = IncrementalAudit.load(tmp_path / "registry-mirrors" / "acme.fold",
                                     store.secret("audit-fold-key"))
        assert fold.size == kept.size
        again = Monitor(load_config(cfg), store, tmp_path / "registry-mirrors")
        assert again.check_all() == {"acme": "verified"}
    finally:
        store.close()


def test_the_registry_keeps_its_findings_in_postgresql(lab: Path, served: str,
                                                       tmp_path: Path, pg_server: object
                                                       ) -> None:
    url = pg_server.new_database()  # type: ignore[attr-defined]
    cfg = _config(tmp_path / "registry.yaml", [("acme", served, lab / "ws" / "trust.yaml")])
    res = sh("registry", "check", "--config", str(cfg), "--db", url)
    assert res.returncode == 0, res.stdout + res.stderr
    store = RegistryStore(url)
    try:
        kept = store.log("acme")
        assert kept is not None and kept.status == "verified" and kept.audit["runs"]
        assert any(e.kind == "pause" for e in store.events("acme"))
    finally:
        store.close()
