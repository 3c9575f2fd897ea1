"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers that read bytes from others:
signed notes and checkpoints, witness cosignatures, tlog-proof receipts, DSSE envelopes and
the statements inside them.

    .venv/bin/python benchmarks/fuzz_atheris.py                   # 2 minutes
    .venv/bin/python benchmarks/fuzz_atheris.py --seconds 3600 --corpus fuzz-corpus

The first byte of each input picks the parser, the rest is its input. Every parser must
return or raise a :class:`~scalegate.errors.ScalegateError`; anything else is a crash, which
libFuzzer reports with the input that caused it (saved as ``crash-*``; replay it by passing
the file instead of a corpus). Seeds are real artefacts: a ledger's entries, their receipts
cosigned by a witness, and the checkpoint notes. At the end libFuzzer prints
``Done N runs in S second(s)``.

Needs ``atheris`` (in the dev extra on Linux x86-64, where it installs from a wheel).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

with atheris.instrument_imports():
    from scalegate.audit.receipt import audit_receipt
    from scalegate.errors import ScalegateError
    from scalegate.ledger._admission import prepare
    from scalegate.ledger.checkpoint import Checkpoint
    from scalegate.ledger.cosignature import CosignatureVerifier, open_cosigned_checkpoint
    from scalegate.ledger.envelope import Envelope, read_canonical, statement_digest
    from scalegate.ledger.note import parse_note, verify_note
    from scalegate.ledger.statements import parse_statement
    from scalegate.ledger.tlog_proof import parse_receipt, verify_receipt

from fuzz.lab import Lab, build_lab  # the tests' small real ledger

#: Until YAML and JSON are read under a depth limit (``scalegate.documents``), nesting a
#: thousand deep is a known RecursionError of the JSON readers: counted, not a crash.
KNOWN: tuple[type[BaseException], ...] = (
    () if importlib.util.find_spec("scalegate.documents") else (RecursionError,))


def targets(lab: Lab) -> list[tuple[str, Callable[[bytes], object]]]:
    """The parsers under test, each taking the input bytes."""
    log = lab.log_key.vkey
    witness = CosignatureVerifier.from_key(lab.witness)
    entry = lab.entries[3]

    def text(data: bytes) -> str:
        return data.decode("utf-8", "surrogateescape")

    return [
        ("note", lambda d: parse_note(d)),
        ("note verified", lambda d: verify_note(d, [log, witness])),
        ("cosigned checkpoint", lambda d: open_cosigned_checkpoint(d, log, [witness], 1)),
        ("checkpoint body", lambda d: Checkpoint.parse(text(d))),
        ("receipt", lambda d: parse_receipt(d)),
        ("receipt verified", lambda d: verify_receipt(d, entry, log, [witness], 1)),
        ("receipt audited", lambda d: audit_receipt(lab.receipts[3], d, lab.trust)),
        ("envelope", lambda d: Envelope.from_bytes(d)),
        ("canonical envelope", _canonical),
        ("envelope to append", lambda d: prepare(d)),
        ("statement", lambda d: parse_statement(d)),
    ]


def _canonical(data: bytes) -> None:
    """``read_canonical`` never raises, and agrees with the full decoder when it answers."""
    fast = read_canonical(data)
    statement_digest(data)
    if fast is not None:
        env = Envelope.from_bytes(data, canonical=True)
        assert fast[1] == env.payload_bytes(), "fast and full decoders disagree"


def seeds(lab: Lab) -> list[bytes]:
    """One seed per parser and artefact, prefixed with the parser's number."""
    notes = [parse_receipt(r).checkpoint.encode() for r in lab.receipts[:2]]
    receipts = [r.encode() for r in lab.receipts[:4]]
    statements = [Envelope.from_bytes(e).payload_bytes() for e in lab.entries]
    by_kind = {"note": notes, "checkpoint": [parse_note(n)[0].encode() for n in notes],
               "receipt": receipts, "envelope": lab.entries, "statement": statements}
    out = []
    for i, (name, _) in enumerate(targets(lab)):
        kind = next((k for k in by_kind if k in name), "envelope")
        if name == "receipt audited":
            kind = "envelope"  # it fuzzes the entry
        out.extend(bytes([i]) + s for s in by_kind[kind])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=120, help="how long to fuzz (default 120)")
    ap.add_argument("--corpus", type=Path, help="corpus directory, kept between runs "
                    "(default: a temporary one seeded with real artefacts)")
    args, libfuzzer = ap.parse_known_args()
    work = Path(tempfile.mkdtemp(prefix="scalegate-atheris-"))
    lab = build_lab(work)
    corpus = args.corpus or work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(seeds(lab)):
        (corpus / f"seed-{n:03d}").write_bytes(seed)
    parsers = targets(lab)
    known = {"count": 0}

    def one_input(data: bytes) -> None:
        if not data:
            return
        _, parse = parsers[data[0] % len(parsers)]
        try:
            parse(data[1:])
        except ScalegateError:
            pass
        except KNOWN as exc:
            known["count"] += 1
            if known["count"] == 1:
                print(f"known problem, not counted as a crash: {type(exc).__name__} (JSON "
                      "nested too deep)", flush=True)

    sys.setrecursionlimit(1000)  # what the CLI runs with
    argv = [sys.argv[0], f"-max_total_time={args.seconds}", "-max_len=8192",
            "-print_final_stats=1", *libfuzzer, str(corpus)]
    print(f"fuzzing {len(parsers)} parsers for {args.seconds} s; corpus {corpus}", flush=True)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
