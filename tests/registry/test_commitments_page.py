"""The registry judges the commitments proposed in the logs it follows: three labs, each
log served by its own `scalegate serve` process, one joint commitment, one lab in breach
and a signature claiming another lab's CEO; the pages and the API show it, each signature
with a verify button pointing at the log that holds it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

from commitments.test_three_labs import TEXT, Lab, breach_and_impostor
from scalegate.commitments import parse_commitment
from scalegate.commitments.joining import endorse, propose
from scalegate.registry import Monitor, RegistryStore, load_config
from scalegate.registry.web import create_registry_app
from server.serving import SCALEGATE, free_port, serving

pytestmark = pytest.mark.slow


def _story(tmp_path: Path) -> list[Lab]:
    labs = [Lab.create(tmp_path, org) for org in ("lab-a", "lab-b", "lab-c")]
    a, b, c = labs
    doc = parse_commitment(TEXT)
    propose(a.ws.ledger, a.ws.key("ceo"), doc, TEXT)
    for lab in labs:
        endorse(lab.ws.ledger, lab.ws.key("ceo"), doc)
    breach_and_impostor(b, c, doc)
    for lab in labs:
        lab.cosign()
        lab.ws.close()
    return labs


def test_the_registry_shows_a_joint_commitment_with_its_breach_and_its_impostor(
        tmp_path: Path) -> None:
    labs = _story(tmp_path)
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(serving(lab.ws.ledger_path, "--checkpoint-interval",
                                            "1h"))[0] for lab in labs]
        cfg = tmp_path / "registry.yaml"
        cfg.write_text("logs:\n" + "".join(
            f"  - name: {lab.ws.org}\n    url: {url}\n    trust: {lab.trust_path}\n"
            for lab, url in zip(labs, urls, strict=True)) + "hold_to: []\n")
        store = RegistryStore(tmp_path / "registry.db")
        try:
            monitor = Monitor(load_config(cfg), store, tmp_path / "work")
            # lab-b's run cites a policy its log never published: its audit says so, but
            # the log itself holds up, and its statements prove the breach.
            assert monitor.check_all() == {"lab-a": "verified", "lab-b": "violations",
                                           "lab-c": "verified"}
            (c,) = store.commitments()
            assert c["id"] == "three-labs-pause" and c["state"] == "active"
            parties = {p["org"]: p for p in c["parties"]}
            assert parties["lab-b"]["compliance"] == "in breach"
            assert parties["lab-a"]["compliance"] == "compliant"
            assert len(c["alerts"]) == 1
            client = TestClient(create_registry_app(store, tmp_path / "work"))
            listing = client.get("/commitments").text
            assert "three-labs-pause" in listing and "in breach" in listing
            page = client.get("/commitments/three-labs-pause").text
            assert "claimed, not verified" in page and "B. Boss" in page
            assert page.count("data-verify=") == 4  # every signature, from the log holding it
            assert client.get("/api/commitments/three-labs-pause").json()["state"] == "active"
            missing = client.get("/api/commitments/none")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            # A round later, nothing new: the same judgement, from the audits kept.
            monitor.check_all()
            assert store.commitment("three-labs-pause")["state"] == "active"  # type: ignore[index]
            # `commitment status --registry URL` shows the registry's judgement.
            server = uvicorn.Server(uvicorn.Config(create_registry_app(store), host="127.0.0.1",
                                                   port=(port := free_port()),
                                                   log_level="warning"))
            threading.Thread(target=server.run, daemon=True).start()
            while not server.started:
                time.sleep(0.05)
            base = f"http://127.0.0.1:{port}"
            res = subprocess.run([SCALEGATE, "commitment", "status", "three-labs-pause",
                                  "--registry", base, "--json"], capture_output=True,
                                 text=True, timeout=60)
            assert res.returncode == 3, res.stdout + res.stderr  # lab-b is in breach
            assert json.loads(res.stdout)["state"] == "active"
            gone = subprocess.run([SCALEGATE, "commitment", "status", "nothing",
                                   "--registry", base], capture_output=True, text=True,
                                  timeout=60)
            assert gone.returncode != 0 and "404" in gone.stdout + gone.stderr
            assert "Traceback" not in gone.stderr
            server.should_exit = True
        finally:
            store.close()
