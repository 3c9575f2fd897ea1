"""An organisation's roots at its domain: fetched over real HTTPS (a test CA, a local
server), checked, recorded as a signed statement, and then trusted for signatures on a
commitment where no trust file names that organisation."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from scalegate.audit import Witness, load_trust, trust_for, witness_ledger
from scalegate.commitments import commitment_status, parse_commitment
from scalegate.commitments.domain import check_domain
from scalegate.commitments.evidence import LogToRead, gather
from scalegate.commitments.joining import endorse, propose
from scalegate.errors import CommitmentError
from scalegate.ledger import (
    CosignatureVerifier,
    KeyPredicate,
    Ledger,
    SigningKey,
    now_utc,
    sign_statement,
)
from server.serving import SCALEGATE

PLEDGE = """\
id: shared-pledge
title: A pledge signed in a shared log
text: We train nothing past 1e26 FLOP this year.
scope: {compute: {flop: 1.0e+26}}
window: {start: activation, duration: 365d}
activation: {immediately: true}
"""


class _Site:
    """An HTTPS server for 127.0.0.1 whose well-known document the test sets."""

    def __init__(self, ca: trustme.CA) -> None:
        self.body = b"{}"
        self.status = 200
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(site.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(site.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.domain = f"127.0.0.1:{self.server.server_address[1]}"

    def serve(self, doc: dict[str, object]) -> None:
        self.body = json.dumps(doc).encode()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[_Site, Path]]:
    ca = trustme.CA()
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    s = _Site(ca)
    yield s, cafile
    s.server.shutdown()


def test_a_domain_check_sees_the_roots_and_refuses_what_does_not_hold(
        site: tuple[_Site, Path]) -> None:
    s, cafile = site
    root = SigningKey.generate("acme/root")
    s.serve({"scalegate": 1, "org": "acme", "roots": [root.vkey.text()]})
    seen = check_domain(s.domain, cafile=cafile)
    assert seen.org == "acme" and seen.roots == [root.vkey.text()]
    assert len(seen.tls_certificate_sha256) == 64
    other = SigningKey.generate("evil/root")
    s.serve({"scalegate": 1, "org": "acme", "roots": [other.vkey.text()]})
    with pytest.raises(CommitmentError, match="named for 'evil'"):
        check_domain(s.domain, cafile=cafile)
    s.serve({"org": "acme"})
    with pytest.raises(CommitmentError, match="roots"):
        check_domain(s.domain, cafile=cafile)
    s.status = 302
    with pytest.raises(CommitmentError, match="302"):
        check_domain(s.domain, cafile=cafile)
    with pytest.raises(CommitmentError, match="TLS"):  # a CA this machine does not trust
        check_domain(s.domain)
    for bad in ("bad domain", "acme.example:port", "-x.example", "a.example:99999", ""):
        with pytest.raises(CommitmentError, match="not a domain"):
            check_domain(bad)


def test_roots_seen_at_a_domain_bind_signatures_in_a_shared_log(
        site: tuple[_Site, Path], tmp_path: Path) -> None:
    """A shared commitments log whose auditor trusts the host's root alone: acme's root
    registered acme's CEO there, who signs a pledge. Until a domain check vouches for
    acme's root, the signature is only claimed (and the log fails its audit for the root
    it does not know); once the host has logged what acme's domain serves, it counts, as
    known by domain, and the log verifies."""
    s, cafile = site
    host_root, host_ceo = SigningKey.generate("host/root"), SigningKey.generate("host/ceo")
    acme_root, acme_ceo = SigningKey.generate("acme/root"), SigningKey.generate("acme/ceo")
    log_key = SigningKey.generate("shared.example/log")
    log_key.save(tmp_path / "log.key")
    host_ceo.save(tmp_path / "host-ceo.key")
    path = tmp_path / "shared.db"
    led = Ledger.create(path, log_key.name, tmp_path / "log.key",
                        [host_root.vkey, acme_root.vkey])
    since = now_utc() - timedelta(minutes=1)
    for key, root, org in ((host_ceo, host_root, "host"), (acme_ceo, acme_root, "acme")):
        led.append(sign_statement(KeyPredicate(vkey=key.vkey.text(), org=org,
                                               roles=["signatory"], valid_from=since), root))
    doc = parse_commitment(PLEDGE)
    propose(led, host_ceo, doc, PLEDGE)
    endorse(led, acme_ceo, doc)
    witness_key = SigningKey.generate("witness.example/w")
    witness = Witness(tmp_path / "w.json", witness_key, {led.origin: log_key.vkey})
    trust = tmp_path / "trust.yaml"
    trust.write_text(trust_for(led.origin, log_key.vkey, [host_root.vkey],
                               witnesses=[CosignatureVerifier.from_key(witness_key)]
                               ).to_yaml())

    def cosigned() -> None:
        led.checkpoint()
        witness_ledger(led, witness)

    cosigned()
    (claimed,) = _status(path, trust).signatures
    assert claimed.method == "claimed", claimed.why
    s.serve({"scalegate": 1, "org": "acme", "roots": [acme_root.vkey.text()]})
    led.close()
    res = subprocess.run([SCALEGATE, "org", "verify-domain", s.domain, "--key",
                          str(tmp_path / "host-ceo.key"), "--ledger", str(path),
                          "--ca", str(cafile)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    said = " ".join(res.stdout.split())  # as wrapped to the terminal
    assert "root key(s) of acme" in said and "recorded as entry" in said
    led = Ledger.open(path)
    cosigned()
    led.close()
    after = _status(path, trust)
    (sig,) = after.signatures
    assert sig.method == "domain", sig.why
    assert {p.org: p.compliance for p in after.parties}["acme"] != "not bound"


def _status(path: Path, trust: Path):  # type: ignore[no-untyped-def]
    now = now_utc()
    return commitment_status(gather("shared-pledge", [LogToRead(path, load_trust(trust))],
                                    now=now), now)
