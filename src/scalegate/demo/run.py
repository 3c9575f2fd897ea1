"""``scalegate demo``: a tiny transformer trained under the demo policy, end to end.

The run counts its compute, is evaluated at the policy's compute milestones through
Inspect AI, pauses itself when the stand-in dangerous capability reaches its trigger
without the required safeguard, and — visibly — resumes from the paused checkpoint only
after the CISO attests the safeguard and the RSO and a board member approve. When its
compute crosses the policy's notification line the trainer records the notice it sent.
An independent witness cosigns the log as it grows, so the audit can bound when each
entry was logged by a clock the lab does not hold. It ends with a verification of the
ledger and every decision replayed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from scalegate.demo.display import DemoView, EvalRow
from scalegate.demo.evaluations import DANGEROUS_EVAL, demo_suite
from scalegate.demo.workspace import Workspace, create_workspace
from scalegate.errors import RunError
from scalegate.gate import Decision
from scalegate.governance import approve, attest, notify, publish_policy, resume
from scalegate.ledger import CheckpointPredicate
from scalegate.manifest import manifest_of
from scalegate.policy import Policy, load_policy
from scalegate.runs import load_state
from scalegate.supervisor import Supervisor
from scalegate.transcript import Transcript
from scalegate.units import sig2

RUN_ID = "demo-run"
MARKER = ".scalegate-demo"
SAFEGUARD = "security-level-demo"
# Scale up in small steps: the first resumption may go 15 % past the pause, each ceiling
# pause (evaluated at the ceiling) then approves a doubling.
FIRST_CEILING, NEXT_CEILING = "1.15x", "2x"
MAX_PAUSES = 12
WITNESS_EVERY = 50  # steps between the witness's looks at the log
TRANSCRIPT_STEPS = 50  # optimizer steps per transcript segment
CHALLENGED = 3  # segments the closing spot-check re-executes


def _add_witness(ws: Workspace, root: Path) -> Any:
    """An independent witness (its own key and state, in ``root/witness``) that the
    auditor's trust file names, with a quorum of one."""
    from scalegate.audit import TrustFile, Witness, load_trust
    from scalegate.ledger import CosignatureVerifier, SigningKey

    home = root / "witness"
    home.mkdir()
    key = SigningKey.generate("witness.example/demo-witness")
    key.save(home / "witness.key")
    witness = Witness.create(home / "state.json", home / "witness.key",
                             {ws.ledger.origin: ws.log_key.vkey})
    trust_path = root / "trust.yaml"
    trust = TrustFile.model_validate({
        **load_trust(trust_path).model_dump(mode="json"),
        "witnesses": {key.name: CosignatureVerifier.from_key(key).text()},
        "witness_quorum": 1})
    trust_path.write_text(trust.to_yaml())
    return witness


@dataclass(frozen=True)
class DemoOptions:
    """What ``scalegate demo`` was asked to do."""

    dir: Path
    steps: int | None = None
    seed: int | None = None
    until_pause: bool = False
    live: bool = True


def _earlier_log_key(path: Path) -> str | None:
    """The log key of the demo an earlier run left in ``path`` (from its trust file)."""
    from scalegate.documents import Unreadable, YamlDocument

    try:
        data = YamlDocument(str(path / "trust.yaml")).read((path / "trust.yaml").read_text())
        return str(data["log"]["key"]) if (path / MARKER).exists() else None
    except (OSError, UnicodeDecodeError, Unreadable, KeyError, TypeError):
        return None


def prepare_dir(path: Path) -> None:
    """Start from an empty workspace; only ever delete a directory an earlier demo made."""
    if path.exists():
        if not path.is_dir():
            raise RunError(f"--dir {path} exists and is not a directory.",
                           hint="Choose another --dir.")
        if any(path.iterdir()) and not (path / MARKER).exists():
            raise RunError(
                f"--dir {path} is not empty and was not made by `scalegate demo`; "
                "refusing to overwrite it.",
                hint="Choose an empty or new directory with --dir.",
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("made by scalegate demo; deleted by the next demo run\n")


class _Demo:
    def __init__(self, opts: DemoOptions, console: Console) -> None:
        from scalegate.demo.training import DEMO_SEED, DemoTrainConfig

        self.opts, self.console = opts, console
        config = DemoTrainConfig()
        if opts.steps is not None:
            config = config.model_copy(update={"budget_steps": opts.steps})
        self.config = config
        self.seed = DEMO_SEED if opts.seed is None else opts.seed
        self.earlier_log_key = _earlier_log_key(opts.dir)
        prepare_dir(opts.dir)
        self.ws: Workspace = create_workspace(opts.dir)
        self.policy: Policy = load_policy("demo")
        level = self.policy.capabilities[0].levels[0].evaluations[0]
        self.view = DemoView(
            run_id=RUN_ID, policy=f"{self.policy.id} v{self.policy.version}",
            budget=config.budget_steps, alert=level.alert or 0.0,
            trigger=level.trigger or 1.0, dangerous=DANGEROUS_EVAL,
        )
        self.suite = demo_suite()
        self.seen_evals = 0
        self.witness = _add_witness(self.ws, opts.dir)
        self.notified: set[str] = set()
        self.last_witnessed = 0

    def witness_now(self) -> None:
        """The witness cosigns the log's latest checkpoint (the log signs one first)."""
        from scalegate.audit import witness_ledger

        if self.ws.ledger.size == self.last_witnessed:
            return
        self.ws.ledger.checkpoint()
        witness_ledger(self.ws.ledger, self.witness)
        self.last_witnessed = self.ws.ledger.size

    # --- training ------------------------------------------------------------------------

    def _open(self, trainer: Any, *, planned: float | None = None) -> Supervisor:
        ckdir = self.opts.dir / "checkpoints"
        return Supervisor.open(
            RUN_ID, self.policy, self.ws.ledger, self.ws.key("trainer"),
            evaluator=self.suite, model=trainer.model, loss_fn=_demo_loss, planned=planned,
            model_name="TinyGPT (scalegate demo)", checkpoint_dir=ckdir, compute_every=25,
            check_interval=5.0, optimizer=trainer.optimizer,
            save_checkpoint=lambda step: trainer.save(ckdir / f"{RUN_ID}-step{step:05d}.pt"),
            transcript=Transcript(self.opts.dir / "snapshots", segment_steps=TRANSCRIPT_STEPS),
        )

    def spot_check(self) -> bool:
        """The closing spot-check of the run's training transcript: CHALLENGED segments,
        chosen from the root of a checkpoint signed after the last one, re-executed from
        their snapshots (what `scalegate transcript verify` does)."""
        from scalegate.demo.training import DemoReplay
        from scalegate.transcript import (
            catch_probability,
            challenge,
            challenge_seed,
            check_chain,
            verify_segment,
        )

        led = self.ws.ledger
        entries = led.entries(run_id=RUN_ID, kind="segment")
        if not entries:
            return True
        self.witness_now()
        seed = challenge_seed(led, entries[-1].index)
        if seed is None:
            return True
        segments = [e.statement.predicate for e in entries]
        pauses = [getattr(e.statement.predicate, "step", -1)
                  for e in led.entries(run_id=RUN_ID, kind="pause")]
        problems = check_chain(segments, pauses=pauses)  # type: ignore[arg-type]
        replay = DemoReplay(self.config, self.seed)
        picked = challenge(seed, len(segments), CHALLENGED)
        table = Table(title=f"training transcript: {len(segments)} segments; {len(picked)} "
                      f"re-executed, chosen by checkpoint root {seed.hex()[:12]}…",
                      show_header=False, title_justify="left")
        ok = not problems
        for i in picked:
            c = verify_segment(i, segments[i], self.opts.dir / "snapshots", replay)  # type: ignore[arg-type]
            ok = ok and c.ok
            table.add_row("[green]✓[/]" if c.ok else "[red]✗[/]", f"steps {c.start_step}.."
                          f"{c.end_step}", "reproduces bitwise" if c.ok else "; ".join(c.problems))
        for p in problems:
            table.add_row("[red]✗[/]", "transcript", p)
        table.add_row("", "chance to catch one altered segment",
                      f"{catch_probability(len(segments), len(picked)):.0%}")
        self.console.print(table)
        return ok

    def train(self, trainer: Any, sup: Supervisor, live: Live | None) -> Decision | None:
        decision = None
        last_draw = 0.0
        while trainer.step_index < self.config.budget_steps:
            batch = trainer.batch()
            tokens = trainer.step()
            decision = sup.step(tokens=tokens, batch=batch)
            self._observe(sup, decision)
            self._notify(decision)
            if trainer.step_index % WITNESS_EVERY == 0 or decision.verdict != "continue":
                self.witness_now()
            now = time.monotonic()
            if live is not None and (now - last_draw > 0.1 or decision.verdict != "continue"):
                live.update(self.view.render())
                last_draw = now
            if decision.verdict == "pause":
                break
        return decision

    def _notify(self, decision: Decision) -> None:
        """Meet each notification obligation as soon as it is owed: the trainer sends the
        notice (here: a file in the workspace) and records it."""
        for o in decision.obligations:
            if o.id in self.notified:
                continue
            notice = self.opts.dir / f"notice-{o.id}.txt"
            notice.write_text(f"To {o.recipient}: run {RUN_ID} {o.message}.\n")
            ref = notify(self.ws.ledger, self.ws.key("trainer"), RUN_ID, o.id, evidence=notice)
            self.notified.add(o.id)
            self.view.event(f"notified {o.recipient} ({o.id}, entry #{ref.index})")

    def _observe(self, sup: Supervisor, decision: Decision) -> None:
        v = self.view
        v.step, v.flop = sup.step_index, sup.effective_flop
        v.next_eval, v.ceiling = decision.next_eval_at_flop, decision.ceiling_flop
        v.entries = self.ws.ledger.size
        if decision.verdict != v.verdict or decision.verdict != "continue":
            v.reasons = [r.message for r in decision.reasons]
        if decision.verdict != v.verdict:
            v.event(f"step {v.step}: gate says {decision.verdict.upper()}")
        v.verdict = decision.verdict
        evals = sup.state.evals[self.seen_evals:]
        if evals:
            self.seen_evals += len(evals)
            first = evals[0].predicate
            v.evals.append(EvalRow(first.step, first.effective_flop,
                                   {e.predicate.evaluation_id: e.predicate.value for e in evals}))

    # --- the pause and the people --------------------------------------------------------

    def govern(self) -> Path:
        """The people's part of a pause; returns the checkpoint the run resumes from.

        At the capability trigger the CISO attests the missing safeguard and the quorum
        approves going on up to a ceiling; at a ceiling the supervisor has just evaluated
        the model, so the quorum approves the next step on those fresh results."""
        ledger, say = self.ws.ledger, self.console.print
        state = load_state(ledger, RUN_ID)
        pause = state.active_pause
        assert pause is not None
        decision = state.find(pause.predicate.decision)
        rules = [r.rule for r in decision.predicate.reasons] if decision else []  # type: ignore[attr-defined]
        at_ceiling = "ceiling" in rules
        title = "the run paused itself at its ceiling" if at_ceiling else "the run paused itself"
        say(Panel.fit(
            f"[bold red]PAUSED[/] at step {pause.predicate.step}, "
            f"{sig2(pause.predicate.effective_flop)} FLOP (entry #{pause.index})\n"
            f"{pause.predicate.public_statement}", title=title, border_style="red"))
        if at_ceiling:
            self._approve_next_step(state, pause.predicate.step)
        else:
            self._attest_and_approve()
        return self._resume()

    def _attest_and_approve(self) -> None:
        ledger, key, say = self.ws.ledger, self.ws.key, self.console.print
        try:
            resume(ledger, key("trainer"), RUN_ID)
        except Exception as exc:  # the gate's refusal, shown to the reader
            say(f"[dim]trainer tries to resume →[/] [red]refused:[/] {exc}")
        ref = attest(ledger, key("ciso"), SAFEGUARD, policy=self.policy,
                     evidence=b"demo: weight-security review, all controls in place")
        say(f"[green]✓[/] CISO attests [bold]{SAFEGUARD}[/] (entry #{ref.index})")
        ref = approve(ledger, key("rso"), RUN_ID, "safeguard verified; resume in steps",
                      ceiling=FIRST_CEILING)
        say(f"[green]✓[/] RSO approves, ceiling {FIRST_CEILING} the compute at the pause "
            f"(entry #{ref.index})")
        ref = approve(ledger, key("board"), RUN_ID, "board concurs")
        say(f"[green]✓[/] board member approves (entry #{ref.index})")

    def _approve_next_step(self, state: Any, step: int) -> None:
        ledger, key, say = self.ws.ledger, self.ws.key, self.console.print
        fresh = [e.predicate for e in state.evals if e.predicate.step == step]
        shown = ", ".join(f"{p.evaluation_id} {p.value:.2f}" for p in fresh if p.value is not None)
        say(f"[green]✓[/] evaluated at the ceiling before pausing: {shown or 'no results'}")
        ref = approve(ledger, key("rso"), RUN_ID, "evaluated at the ceiling; next step",
                      ceiling=NEXT_CEILING)
        say(f"[green]✓[/] RSO approves the next step, ceiling {NEXT_CEILING} "
            f"(entry #{ref.index})")
        ref = approve(ledger, key("board"), RUN_ID, "board concurs")
        say(f"[green]✓[/] board member approves (entry #{ref.index})")

    def _resume(self) -> Path:
        ledger, say = self.ws.ledger, self.console.print
        ref = resume(ledger, self.ws.key("trainer"), RUN_ID)
        state = load_state(ledger, RUN_ID)
        ck = state.find(state.resumes[-1].predicate.checkpoint)
        assert ck is not None and isinstance(ck.predicate, CheckpointPredicate)
        path = Path(ck.predicate.uri or "")
        if manifest_of(path).digest != ck.predicate.digest:
            raise RunError(f"checkpoint {path} does not match the digest the pause recorded")
        say(f"[green]✓[/] resumed (entry #{ref.index}) from checkpoint {path.name}, "
            f"digest {ck.predicate.digest[:16]}… matches the pause record")
        return path

    # --- the end -------------------------------------------------------------------------

    def verify(self) -> bool:
        """Audit the ledger as a regulator would: trusting only the workspace's trust file."""
        from scalegate.audit import audit_ledger, load_trust, write_html

        ledger = self.ws.ledger
        self.witness_now()  # a signed checkpoint covering everything, cosigned
        audit = audit_ledger(
            ledger.path, load_trust(self.opts.dir / "trust.yaml"), use_state=False
        )
        report = audit.report
        write_html(self.opts.dir / "audit.html", audit)
        run = audit.run(RUN_ID)
        decisions = len(run.replay.decisions) if run and run.replay else 0
        table = Table(title="audit (scalegate verify, trusting only trust.yaml)",
                      show_header=False, title_justify="left")
        for check in report.checks:
            mark = "[green]✓[/]" if check.ok else "[red]✗[/]"
            table.add_row(mark, check.name, check.detail)
        table.add_row("", "decisions replayed", str(decisions))
        table.add_row("", "violations", "[green]none[/]" if report.violations_total == 0
                      else f"[red]{report.violations_total}[/]")
        self.console.print(table)
        for v in report.violations[:5]:
            self.console.print(f"  [red]•[/] {v.kind}: {v.message}", markup=False)
        return report.ok

    def where(self) -> None:
        d = self.opts.dir
        self.console.print(
            f"files: ledger [bold]{d / 'ledger.db'}[/], audit report {d / 'audit.html'}, "
            f"keys {d / 'keys'}, checkpoints "
            f"{d / 'checkpoints'}, evaluation logs {d / 'checkpoints' / 'eval-logs'}\n"
            f"try: [bold]scalegate run status {RUN_ID} --ledger {d / 'ledger.db'}[/]\n"
            f"audit it as a regulator would: [bold]scalegate verify --ledger {d / 'ledger.db'} "
            f"--trust {d / 'trust.yaml'}[/]"
        )


def run_demo(opts: DemoOptions, console: Console | None = None) -> bool:
    """Run the demo; True when it ended with a verified ledger."""
    from scalegate.compute import count
    from scalegate.demo.training import DemoTrainer

    console = console or Console()
    demo = _Demo(opts, console)
    try:
        if demo.earlier_log_key not in (None, demo.ws.log_key.vkey.text()):
            console.print(
                f"[bold yellow]note:[/bold yellow] {opts.dir} held an earlier demo; this one "
                "has new keys and a new ledger, so a trust file handed out for the earlier "
                f"one (log key {demo.earlier_log_key.split('+')[1]}) no longer matches: hand "
                f"out {opts.dir / 'trust.yaml'} again.", highlight=False)
        console.print(f"workspace {opts.dir}: keys for root, log, trainer, ciso, rso, board; "
                      f"ledger with {demo.ws.ledger.size} key registrations")
        ref, _ = publish_policy(demo.ws.ledger, demo.ws.key("rso"), demo.policy)
        console.print(f"RSO publishes policy {demo.policy.id} {demo.policy.version} "
                      f"(entry #{ref.index}); the run will cite it")
        trainer = DemoTrainer(demo.config, seed=demo.seed)
        per_step = count(trainer.model, trainer.batch(), _demo_loss).model_flop
        sup = demo._open(trainer, planned=per_step * demo.config.budget_steps)
        planned = per_step * demo.config.budget_steps
        demo.view.event(f"run registered under policy demo; planned {sig2(planned)} FLOP")
        decision = _train_live(demo, trainer, sup)
        for _ in range(MAX_PAUSES):
            if decision is None or decision.verdict != "pause":
                break
            if opts.until_pause:
                console.print(f"stopped at the pause (--until-pause). Continue by hand: "
                              f"scalegate run status {RUN_ID} --ledger {opts.dir / 'ledger.db'}")
                return demo.verify()
            path = demo.govern()
            trainer = DemoTrainer.load(path)
            sup = demo._open(trainer)
            demo.view.event(f"resumed at step {trainer.step_index}")
            decision = _train_live(demo, trainer, sup)
        else:
            raise RunError(f"the demo run paused more than {MAX_PAUSES} times; giving up.",
                           hint="Run it with fewer --steps.")
        sup.flush()
        console.print(f"training finished at step {demo.view.step}, "
                      f"{sig2(demo.view.flop)} FLOP, final verdict {demo.view.verdict}")
        ok = demo.verify() and demo.spot_check()
        demo.where()
        return ok
    finally:
        demo.ws.close()


def _train_live(demo: _Demo, trainer: Any, sup: Supervisor) -> Decision | None:
    if not demo.opts.live:  # no live view: show where it ended
        decision = demo.train(trainer, sup, None)
        demo.console.print(demo.view.render())
        return decision
    with Live(demo.view.render(), console=demo.console, refresh_per_second=8,
              transient=False) as live:
        decision = demo.train(trainer, sup, live)
        live.update(demo.view.render())
    return decision


def _demo_loss(model: Any, batch: Any) -> Any:
    import torch.nn.functional as F

    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), ignore_index=-1)
