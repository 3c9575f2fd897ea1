"""Signed notes, checkpoints, witness cosignatures and note keys (the C2SP text formats):
valid ones round-trip; mutated and random ones parse or raise the project's own error, and a
mutated note that still verifies opens to the text that was signed."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from scalegate.audit.witness import Witness, format_add_checkpoint, parse_add_checkpoint
from scalegate.errors import KeyMaterialError, NoteError, ProofError, WitnessRefused
from scalegate.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from scalegate.ledger.cosignature import (
    CosignatureVerifier,
    cosign,
    cosignature_timestamp,
    open_cosigned_checkpoint,
)
from scalegate.ledger.keys import SigningKey, VerifierKey, verifier_key_in
from scalegate.ledger.note import (
    NoteSignature,
    add_signature_lines,
    parse_note,
    parse_signature_line,
    sign_note,
    verify_note,
)
from scalegate.ledger.tlog_proof import parse_receipt

from .mutations import fuzz_settings, mutants, only_own_errors, text_mutants

LOG = SigningKey.from_seed("example.org/log", bytes(range(32)))
WITNESS = SigningKey.from_seed("witness.example/w1", bytes(range(1, 33)))
STRANGER = SigningKey.from_seed("stranger.example/k", bytes(range(2, 34)))
W = CosignatureVerifier.from_key(WITNESS)
CHECKPOINT = Checkpoint("example.org/log", 41, bytes(range(32)), ("ext line",))
SIGNED = sign_checkpoint(CHECKPOINT, LOG)
COSIGNED = SIGNED + cosign(CHECKPOINT.body(), WITNESS, 1_700_000_000)
PLAIN_TEXT = "a note\nthat is not a checkpoint\n"
PLAIN = sign_note(PLAIN_TEXT, [LOG, STRANGER])
NOTES = [SIGNED, COSIGNED, PLAIN, COSIGNED + sign_note(CHECKPOINT.body(), [STRANGER]).split(
    "\n\n", 1)[1]]
TEXTS = {CHECKPOINT.body(), PLAIN_TEXT}

# Key names: non-empty, no spaces, no '+', no control characters (c2sp.org/signed-note).
KEY_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
                           blacklist_characters="+"),
    min_size=1, max_size=24,
).filter(lambda n: not any(c.isspace() for c in n))
LINE = st.text(alphabet=st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)),
               max_size=30)
NOTE_TEXT = st.lists(LINE, min_size=1, max_size=5).map(lambda ls: "\n".join(ls) + "\n")
SEED = st.binary(min_size=32, max_size=32)
CHECKPOINTS = st.builds(
    Checkpoint,
    origin=LINE.filter(bool),
    size=st.integers(0, 2**64 - 1),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(LINE.filter(bool), max_size=3).map(tuple),
)


# --- round trips -----------------------------------------------------------------------------


@fuzz_settings(60)
@given(text=NOTE_TEXT, names=st.lists(KEY_NAME, min_size=1, max_size=3, unique=True), seed=SEED)
def test_signed_note_round_trips(text: str, names: list[str], seed: bytes) -> None:
    keys = [SigningKey.from_seed(n, seed) for n in names]
    note = sign_note(text, keys)
    want = [NoteSignature(k.name, k.key_id, k.sign(text.encode())) for k in keys]
    assert parse_note(note) == (text, want)
    assert parse_note(note.encode()) == (text, want)
    assert [parse_signature_line(s.line()) for s in want] == want
    opened = verify_note(note, [k.vkey for k in keys])
    assert (opened.text, opened.names) == (text, names)


@fuzz_settings(60)
@given(CHECKPOINTS)
def test_checkpoint_round_trips(cp: Checkpoint) -> None:
    assert Checkpoint.parse(cp.body()) == cp
    assert open_checkpoint(sign_checkpoint(cp, LOG), LOG.vkey, origin=cp.origin)[0] == cp


@fuzz_settings(40)
@given(name=KEY_NAME, seed=SEED, timestamp=st.integers(0, 2**63 - 1))
def test_cosignature_round_trips(name: str, seed: bytes, timestamp: int) -> None:
    key = SigningKey.from_seed(name, seed)
    verifier = CosignatureVerifier.from_key(key)
    assert CosignatureVerifier.parse(verifier.text()) == verifier
    assert CosignatureVerifier.parse(key.vkey.text()) == verifier  # a plain note key converts
    note = SIGNED + cosign(CHECKPOINT.body(), key, timestamp)
    cp, found = open_cosigned_checkpoint(note, LOG.vkey, [verifier], 1)
    assert cp == CHECKPOINT
    assert [(c.name, c.timestamp) for c in found] == [(name, timestamp)]


@fuzz_settings(40)
@given(name=KEY_NAME, seed=SEED)
def test_keys_round_trip(name: str, seed: bytes) -> None:
    key = SigningKey.from_seed(name, seed)
    assert VerifierKey.parse(key.vkey.text()) == key.vkey
    assert SigningKey.parse(key.text()).text() == key.text()


# --- mutated and random input ----------------------------------------------------------------


@fuzz_settings(300)
@given(mutants([n.encode() for n in NOTES]))
def test_mutated_notes_parse_or_refuse(data: bytes) -> None:
    only_own_errors(parse_note, data)
    only_own_errors(parse_note, data.decode("utf-8", "surrogateescape"))
    opened = only_own_errors(verify_note, data, [LOG.vkey, W, STRANGER.vkey])
    if opened is not None:  # a signature binds the text: whatever else changed, not that
        assert opened.text in TEXTS
    got = only_own_errors(open_cosigned_checkpoint, data, LOG.vkey, [W], 1)
    if got is not None:
        assert got[0] == CHECKPOINT
        assert [c.timestamp for c in got[1]] == [1_700_000_000]
    only_own_errors(Checkpoint.parse, data.decode("utf-8", "surrogateescape"))


@fuzz_settings(100)
@given(text_mutants([ln for n in NOTES for ln in n.split("\n\n", 1)[1].splitlines()]))
def test_mutated_signature_lines_parse_or_refuse(line: str) -> None:
    sig = only_own_errors(parse_signature_line, line)
    if sig is not None:
        assert len(sig.key_id) == 4
        assert parse_signature_line(sig.line()) == sig
        only_own_errors(cosignature_timestamp, sig)
    only_own_errors(add_signature_lines, SIGNED, line)


KEY_TEXTS = [LOG.vkey.text(), W.text(), LOG.text(), STRANGER.vkey.text()]


@fuzz_settings(200)
@given(text_mutants(KEY_TEXTS))
def test_mutated_key_texts_parse_or_refuse(text: str) -> None:
    for parse in (VerifierKey.parse, CosignatureVerifier.parse, SigningKey.parse):
        key = only_own_errors(parse, text)
        if key is not None:  # whatever parses is a consistent key: it reads back the same
            assert type(key).parse(key.text()).text() == key.text()


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@fuzz_settings(60)
@given(data=mutants([t.encode() for t in KEY_TEXTS]))
def test_key_files_load_or_refuse(key_dir: Path, data: bytes) -> None:
    path = key_dir / "k.key"
    path.unlink(missing_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o600)
    assert verifier_key_in(path) is None or isinstance(verifier_key_in(path), VerifierKey)
    with contextlib.suppress(KeyMaterialError):
        SigningKey.load(path)


@fuzz_settings(100)
@given(st.binary(max_size=120))
def test_cosignature_timestamps_of_any_signature(raw: bytes) -> None:
    sig = NoteSignature("w", b"\0\0\0\0", raw)
    with contextlib.suppress(NoteError):
        assert 0 <= cosignature_timestamp(sig) < 2**63


# --- a witness's add-checkpoint endpoint (c2sp.org/tlog-witness) -------------------------------

REQUESTS = [format_add_checkpoint(0, [], COSIGNED), format_add_checkpoint(7, [bytes(32)] * 3,
                                                                          SIGNED)]


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory) -> Witness:
    state = tmp_path_factory.mktemp("witness") / "state.json"
    return Witness(state, STRANGER, {CHECKPOINT.origin: LOG.vkey})


@fuzz_settings(150)
@given(body=mutants([r.encode() for r in REQUESTS]))
def test_add_checkpoint_requests_are_cosigned_or_refused(witness: Witness, body: bytes) -> None:
    only_own_errors(parse_add_checkpoint, body)
    lines = only_own_errors(witness.add_checkpoint_request, body)
    event("cosigned" if lines is not None else "refused")
    if lines is not None:  # what the witness cosigned is a checkpoint the log signed
        assert witness.latest(CHECKPOINT.origin) is not None


def test_sizes_of_thousands_of_digits_are_refused(witness: Witness) -> None:
    # int() refuses to read more than 4300 digits with a plain ValueError; a checkpoint, a
    # receipt or a witness request carrying such a number crashed. Found by the tests above.
    huge = "9" * 5000
    with pytest.raises(NoteError, match="at most 20 digits"):
        Checkpoint.parse(f"example.org/log\n{huge}\n{'A' * 43}=\n")
    with pytest.raises(ProofError, match="below 2\\^64"):
        parse_receipt(f"c2sp.org/tlog-proof@v1\nindex {huge}\n\n{SIGNED}")
    with pytest.raises(WitnessRefused, match="expected 'old <size>'"):
        witness.add_checkpoint_request(f"old {huge}\n\n{SIGNED}")
