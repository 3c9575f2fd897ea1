"""`scalegate transcript challenge | verify`: spot-check that a run's logged training is
the training that happened, by re-executing segments chosen after the fact."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from scalegate.cli._console import console
from scalegate.cli._ledger import LedgerOpt, _open

app = typer.Typer(help="Training transcripts: choose segments of a run to check, and "
                  "re-execute them from the lab's snapshots.", no_args_is_help=True)
CountOpt = typer.Option(8, "-n", "--count", min=1, help="How many segments to check.")
SeedOpt = typer.Option(None, "--seed", help="Your own seed (hex), instead of the root of "
                       "the first checkpoint the log signed after the run's last segment.")


@app.command("challenge")
def challenge(run: str = typer.Argument(..., help="The run's id."),
              ledger: str | None = LedgerOpt, n: int = CountOpt,
              seed: str | None = SeedOpt) -> None:
    """Print the segments to check: the same list for anyone with the same log."""
    with _open(ledger) as led:
        segments, picked, _, why = _challenge(led, run, n, seed)
    _table(segments, picked, why)


@app.command("verify")
def verify(run: str = typer.Argument(..., help="The run's id."),
           ledger: str | None = LedgerOpt,
           snapshots: Path = typer.Option(..., "--snapshots", exists=True, file_okay=False,
                                          help="The lab's snapshots of "
                                          "the challenged segments (RUN-stepNNNNNNNN.pt)."),
           replay: str = typer.Option(..., "--replay", help="module:object giving make() and "
                                      "step(model, optimizer, batch), and optionally "
                                      "batch(step): the lab's training, to re-execute."),
           data: Path | None = typer.Option(None, "--data", exists=True, file_okay=False,
                                            help="The batches the run kept "
                                            "(RUN-batchesNNNNNNNN.pt), when the replay has "
                                            "no batch(step); default: --snapshots."),
           manifest: Path | None = typer.Option(None, "--manifest", help="The run's data "
                                                "manifest (a hex digest an example a line): "
                                                "checked against the root the run committed "
                                                "to, and every example fed must be in it."),
           n: int = CountOpt, seed: str | None = SeedOpt,
           tolerance: float = typer.Option(0.0, "--tolerance", help="Largest parameter "
                                           "difference accepted (0: bitwise)."),
           calibrate: bool = typer.Option(False, "--calibrate", help="For a run that is not "
                                          "deterministic: re-execute a segment that does not "
                                          "reproduce twice, and accept twice the distance "
                                          "between the two."),
           record: Path | None = typer.Option(None, "--record", help="Your private key "
                                              "file: sign the result and append it to the "
                                              "ledger (a transcript-audit statement)."),
           reveal: str | None = typer.Option(None, "--seed-reveal", help="SEED:SALTHEX the "
                                             "lab revealed: checked against the run's seed "
                                             "commitment."),
           ) -> None:
    """Check the transcript's chain and re-execute the challenged segments. Exits 3 when
    any check fails."""
    from scalegate.transcript import (
        DataManifest,
        SavedBatches,
        catch_probability,
        check_chain,
        verify_segment,
    )

    with _open(ledger) as led:
        segments, picked, drawn, why = _challenge(led, run, n, seed)
        last = max((_step(e) for e in led.entries(run_id=run, kind="compute")), default=None)
        pauses = [_step(e) for e in led.entries(run_id=run, kind="pause")]
        run_statement = next((e.statement.predicate for e in led.entries(run_id=run,
                                                                          kind="run")), None)
    problems = check_chain([s for _, s in segments], last_step=last, pauses=pauses)
    if reveal is not None:
        problems += _seed_problems(reveal, getattr(run_statement, "seed_commitment", None))
    listed = DataManifest.read(manifest) if manifest is not None else None
    if listed is not None:
        problems += _manifest_problems(listed, getattr(run_statement, "data_root", None))
    target = _replay(replay)
    kept = SavedBatches(data, run) if data is not None else None
    checks = [verify_segment(i, segments[i][1], snapshots, target, tolerance=tolerance,
                             calibrate=calibrate, batches=kept, manifest=listed)
              for i in picked]
    table = Table("segment", "steps", "result", title=f"{run}: {len(picked)} of "
                  f"{len(segments)} segments re-executed ({why})", title_justify="left")
    for c in checks:
        table.add_row(str(c.position), f"{c.start_step}..{c.end_step}",
                      ("reproduces" + (f" (distance {c.distance:.3g}" + (
                          f", re-executions {c.delta:.3g} apart" if c.delta else "") + ")"
                          if c.distance else " bitwise")
                       + (f"; {c.flop:.3g} FLOP measured" if c.flop else ""))
                      if c.ok else "; ".join(c.problems))
    console.print(table)
    for p in problems:
        console.print(f"[red]transcript:[/red] {p}", highlight=False)
    chance = catch_probability(len(segments), len(picked))
    console.print(f"a single altered segment is among those checked with probability "
                  f"{chance:.0%}", highlight=False)
    ok = not problems and all(c.ok for c in checks)
    if record is not None:
        _record(ledger, record, run, segments, checks, problems, (drawn, why), ok)
    raise typer.Exit(0 if ok else 3)


def _record(ledger: str | None, key: Path, run: str, segments: list[tuple[int, Any]],
            checks: list[Any], problems: list[str], seed: tuple[bytes, str], ok: bool
            ) -> None:
    """Sign the spot-check's result and append it (a ``transcript-audit`` statement)."""
    from scalegate.ledger import (
        Ref,
        SegmentResult,
        SigningKey,
        TranscriptAuditPredicate,
        now_utc,
        sign_statement,
    )

    signer = SigningKey.load(key)
    with _open(ledger) as led:
        results = []
        for c in checks:
            index = segments[c.position][0]
            ref = Ref(index=index, leaf_hash=led.entry(index).leaf_hash.hex())
            results.append(SegmentResult(segment=ref, start_step=c.start_step,
                                         end_step=c.end_step, ok=c.ok, problems=c.problems,
                                         distance=c.distance))
        got = led.append(sign_statement(TranscriptAuditPredicate(
            run_id=run, segments=len(segments), seed=seed[0].hex(), seed_source=seed[1],
            results=results, chain=problems, ok=ok, at=now_utc()), signer))
    console.print(f"recorded as entry {got.index}, signed by {signer.name}", highlight=False)


def _step(entry: Any) -> int:
    """The optimizer step a compute or pause statement names."""
    return int(getattr(entry.statement.predicate, "step", 0))


def _seed_problems(reveal: str, commitment: str | None) -> list[str]:
    """Whether the seed the lab revealed is the one its run statement committed to."""
    from scalegate.errors import ScalegateError
    from scalegate.transcript import commit_seed

    seed, _, salt = reveal.partition(":")
    try:
        got = commit_seed(int(seed), bytes.fromhex(salt))
    except ValueError as exc:
        raise ScalegateError(f"--seed-reveal {reveal!r}: give SEED:SALTHEX ({exc})") from None
    if commitment is None:
        return ["the run statement commits to no seed"]
    return [] if got == commitment else ["the seed revealed is not the one the run "
                                         "statement committed to"]


def _manifest_problems(listed: Any, committed: str | None) -> list[str]:
    if committed is None:
        return ["the run committed to no data manifest (its run statement has no data root)"]
    if listed.root != committed:
        return [f"the data manifest handed over ({len(listed)} examples) is not the one the "
                "run committed to (its Merkle root differs)"]
    return []


def _challenge(led: Any, run: str, n: int, seed: str | None
               ) -> tuple[list[tuple[int, Any]], list[int], bytes, str]:
    from scalegate.errors import ScalegateError
    from scalegate.transcript import challenge, challenge_seed

    segments = [(e.index, e.statement.predicate) for e in led.entries(run_id=run,
                                                                       kind="segment")]
    if not segments:
        raise ScalegateError(f"run {run!r} has no transcript in this ledger",
                             hint="Record one: Supervisor.open(..., transcript=Transcript(DIR)).")
    if seed is not None:
        try:
            chosen, why = bytes.fromhex(seed), "the seed given"
        except ValueError:
            raise ScalegateError(f"--seed {seed!r} is not hex") from None
    else:
        root = challenge_seed(led, segments[-1][0])
        if root is None:
            raise ScalegateError("the log has signed no checkpoint since the run's last "
                                 "segment: the challenge is not fixed yet",
                                 hint="Wait for the next checkpoint (or give --seed).")
        chosen, why = root, f"seed: checkpoint root {root.hex()[:16]}…"
    return segments, challenge(chosen, len(segments), n), chosen, why


def _table(segments: list[tuple[int, Any]], picked: list[int], why: str) -> None:
    table = Table("segment", "entry", "steps", "end digest", title=f"{len(picked)} of "
                  f"{len(segments)} segments to check ({why})", title_justify="left")
    for i in picked:
        index, s = segments[i]
        table.add_row(str(i), str(index), f"{s.start_step}..{s.end_step}", s.digest[:16] + "…")
    console.print(table)


def _replay(spec: str) -> Any:
    from scalegate.errors import ScalegateError

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ScalegateError(f"--replay {spec!r}: give module:object")
    sys.path.insert(0, str(Path.cwd()))
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ScalegateError(f"--replay {spec!r}: {exc}") from None
    target = target() if isinstance(target, type) else target
    missing = [m for m in ("make", "step") if not callable(getattr(target, m, None))]
    if missing:
        raise ScalegateError(f"--replay {spec!r} has no {', '.join(missing)}")
    return target

