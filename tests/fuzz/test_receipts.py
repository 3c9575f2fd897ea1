"""Offline inclusion receipts (c2sp.org/tlog-proof) and ``scalegate verify --receipt``: valid
ones round-trip and verify; a mutated receipt or entry is refused with the project's own error
or reported, and one that still verifies proves the same entry at the same place."""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from scalegate.audit.receipt import audit_receipt, canonical_entry
from scalegate.ledger import merkle
from scalegate.ledger.checkpoint import Checkpoint, sign_checkpoint
from scalegate.ledger.cosignature import CosignatureVerifier
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.tlog_proof import Receipt, format_receipt, parse_receipt, verify_receipt

from .lab import Lab
from .mutations import (
    fuzz_settings,
    mutants,
    nested_json,
    only_own_errors,
)

KEY = SigningKey.from_seed("example.org/log", bytes(32))
HASH = st.binary(min_size=32, max_size=32)


@fuzz_settings(60)
@given(index=st.integers(0, 2**64 - 1), proof=st.lists(HASH, max_size=64),
       extra=st.none() | st.binary(max_size=40), size=st.integers(0, 2**64 - 1), root=HASH)
def test_receipt_round_trips(index: int, proof: list[bytes], extra: bytes | None, size: int,
                             root: bytes) -> None:
    note = sign_checkpoint(Checkpoint("example.org/log", size, root), KEY)
    text = format_receipt(index, proof, note, extra)
    want = Receipt(index, tuple(proof), note, extra or None)
    assert parse_receipt(text) == want
    assert parse_receipt(text.encode()) == want
    assert want.text() == text


def test_the_labs_receipts_verify(lab: Lab) -> None:
    witness = CosignatureVerifier.from_key(lab.witness)
    for i, (receipt, entry) in enumerate(zip(lab.receipts, lab.entries, strict=True)):
        got = verify_receipt(receipt, entry, lab.log_key.vkey, [witness], 1)
        assert got.index == i
        assert audit_receipt(receipt, entry, lab.trust).ok


@fuzz_settings(200)
@given(data=st.data())
def test_mutated_receipts_are_refused_or_prove_the_same_entry(lab: Lab,
                                                              data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(lab.receipts) - 1), label="entry")
    receipt = data.draw(mutants([lab.receipts[i].encode()]), label="receipt")
    entry = lab.entries[i]
    witness = CosignatureVerifier.from_key(lab.witness)
    only_own_errors(parse_receipt, receipt)
    got = only_own_errors(verify_receipt, receipt, entry, lab.log_key.vkey, [witness], 1)
    event("verified" if got is not None else "refused")
    if got is not None:
        assert (got.index, got.leaf_hash) == (i, merkle.leaf_hash(entry))
    report = only_own_errors(audit_receipt, receipt, entry, lab.trust)
    if report is not None and report.ok:
        assert parse_receipt(receipt).index == i


@fuzz_settings(150)
@given(data=st.data())
def test_mutated_entries_are_refused_or_are_the_entry(lab: Lab, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(lab.receipts) - 1), label="entry")
    entry = data.draw(mutants([lab.entries[i]], deep=True), label="entry bytes")
    only_own_errors(canonical_entry, entry)
    report = only_own_errors(audit_receipt, lab.receipts[i], entry, lab.trust)
    event("verified" if report is not None and report.ok else "refused")
    if report is not None and report.ok:  # the proof binds the bytes (in canonical form)
        assert canonical_entry(entry) == lab.entries[i]


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_an_entry_nested_thousands_deep_is_reported(lab: Lab, depth: int) -> None:
    report = audit_receipt(lab.receipts[1], nested_json(depth), lab.trust)
    assert not report.ok


def test_an_entry_holding_an_encoded_surrogate_is_reported(lab: Lab) -> None:
    # json.loads reads bytes with "surrogatepass": ED A0 80 (an encoded lone surrogate, not
    # UTF-8) became a str the auditor could not encode again. Found by the mutation test above.
    entry = lab.entries[1].replace(b'{"payload":"', b'{"payload":"\xed\xa0\x80', 1)
    report = audit_receipt(lab.receipts[1], entry, lab.trust)
    assert not report.ok
    assert any("not UTF-8" in v.message for v in report.violations)
