"""A small RFC 3161 time-stamping authority for the tests: an HTTP server on 127.0.0.1
(an ephemeral port) with its own test CA, answering ``application/timestamp-query`` posts
with real signed ``TimeStampResp`` tokens (built with asn1crypto, signed with cryptography).

The tests never reach the network: :class:`TestTSA` is a context manager that starts the
server in a thread. Knobs a dishonest or broken authority has: ``now`` (the TSA's clock),
``wrong_imprint`` (it stamps something else than what it was asked to).
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_SERIALS = itertools.count(1)
_POLICY = "1.3.6.1.4.1.57264.99.1"  # a private test policy OID


class TestCA:
    """A self-signed root CA that issues time-stamping certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "scalegate test TSA root") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start = datetime(2020, 1, 1, tzinfo=UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=365 * 30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue_tsa(self, name: str = "scalegate test TSA") -> tuple[ec.EllipticCurvePrivateKey,
                                                                   x509.Certificate]:
        """A key and a certificate for a time-stamping authority (EKU timeStamping, critical)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = datetime(2020, 1, 1, tzinfo=UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=365 * 20))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                           critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return key, cert

    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def write(self, path: Path) -> Path:
        path.write_text(self.pem())
        return path


class TestTSA:
    """An RFC 3161 responder over HTTP on 127.0.0.1; ``url`` once started (``with``)."""

    __test__ = False

    def __init__(self, ca: TestCA | None = None, *, name: str = "scalegate test TSA",
                 now: Callable[[], datetime] | None = None) -> None:
        self.ca = ca or TestCA()
        self.key, self.cert = self.ca.issue_tsa(name)
        self.now = now or (lambda: datetime.now(UTC))
        self.wrong_imprint = False
        self.requests = 0
        self.last_imprint: bytes | None = None  # the digest it was last asked to stamp
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the TSA first (with TestTSA() as tsa: ...)"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/tsa"

    def __enter__(self) -> TestTSA:
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415, "expected application/timestamp-query")
                    return
                answer = tsa.respond(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the protocol --------------------------------------------------------------------

    def respond(self, request: bytes) -> bytes:
        """The DER ``TimeStampResp`` for a DER ``TimeStampReq``."""
        self.requests += 1
        req = tsp.TimeStampReq.load(request)
        imprint = req["message_imprint"]
        self.last_imprint = imprint["hashed_message"].native
        if self.wrong_imprint:
            algo = imprint["hash_algorithm"]
            digest = hashlib.sha256(b"something else").digest()
            imprint = tsp.MessageImprint({"hash_algorithm": algo, "hashed_message": digest})
        info = {
            "version": "v1",
            "policy": _POLICY,
            "message_imprint": imprint,
            "serial_number": next(_SERIALS),
            "gen_time": self.now().astimezone(UTC),
            "accuracy": {"seconds": 1},
        }
        if req["nonce"].native is not None:
            info["nonce"] = req["nonce"].native
        tst = tsp.TSTInfo(info)
        token = self._sign(tst.dump(), include_cert=bool(req["cert_req"].native))
        return tsp.TimeStampResp({"status": {"status": "granted"},
                                  "time_stamp_token": token}).dump()

    def _sign(self, content: bytes, *, include_cert: bool) -> cms.ContentInfo:
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        acert = ax509.Certificate.load(cert_der)
        ess = tsp.SigningCertificateV2({"certs": [tsp.ESSCertIDv2({
            "hash_algorithm": {"algorithm": "sha256"},
            "cert_hash": hashlib.sha256(cert_der).digest(),
        })]})
        signed_attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "message_digest",
                              "values": [hashlib.sha256(content).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}),
        ])
        signature = self.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
                "issuer": acert.issuer, "serial_number": acert.serial_number})}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": signature,
        })
        signed = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info",
                                   "content": core.ParsableOctetString(content)},
            "signer_infos": [signer],
        }
        if include_cert:
            signed["certificates"] = [acert]
        return cms.ContentInfo({"content_type": "signed_data",
                                "content": cms.SignedData(signed)})
