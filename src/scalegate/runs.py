"""Runs as the ledger records them: register a run, read its entries, fold its state, find
its policy and its last decision.

This is the bridge between the log (entries, signers, the key registry) and the pure
fold in :mod:`scalegate.state`: each entry is given to the fold with its signer's key
name and the roles that key was registered with, so the gate can check who attested
and who approved.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from scalegate.errors import RunError
from scalegate.gate import Decision
from scalegate.ledger import (
    KeyRegistry,
    Ledger,
    LogEntry,
    PolicyPredicate,
    PolicyRef,
    Ref,
    RunPredicate,
    SigningKey,
    sign_statement,
)
from scalegate.policy import Policy, parse_policy
from scalegate.state import LoggedStatement, RunState, fold


def ref_of(entry: LogEntry) -> Ref:
    """The ``{index, leaf_hash}`` reference of a stored entry."""
    return Ref(index=entry.index, leaf_hash=entry.leaf_hash.hex())


def to_entries(log_entries: Iterable[LogEntry], registry: KeyRegistry) -> list[LoggedStatement]:
    """Log entries as the fold wants them: ref, statement, signer name and roles."""
    out = []
    for e in log_entries:
        reg = registry.get(e.signer)
        out.append(
            LoggedStatement(
                ref=ref_of(e),
                statement=e.statement,
                signer=reg.vkey.name if reg else e.signer.split("+", 1)[0],
                roles=tuple(reg.roles) if reg else (),
                logged_at=e.appended_at,
            )
        )
    return out


def run_log_entries(ledger: Ledger, run_id: str) -> list[LogEntry]:
    """Every entry that concerns ``run_id``, plus organisation-wide attestations, in order."""
    own = ledger.entries(run_id=run_id)
    org_wide = [e for e in ledger.entries(kind="attestation") if e.run_id is None]
    return sorted(own + org_wide, key=lambda e: e.index)


def load_state(ledger: Ledger, run_id: str) -> RunState:
    """Fold everything the ledger says about ``run_id``."""
    entries = to_entries(run_log_entries(ledger, run_id), ledger.registry())
    return fold(entries, run_id=run_id)


def require_run(ledger: Ledger, run_id: str) -> RunState:
    """The state of a registered run; :class:`RunError` naming the known runs otherwise."""
    state = load_state(ledger, run_id)
    if state.run is None:
        known = ", ".join(list_runs(ledger)) or "none yet"
        raise RunError(
            f"run {run_id!r} is not registered in ledger {ledger.path} (runs: {known}).",
            hint="Check the run id (`scalegate runs`), or the ledger path (--ledger).",
        )
    return state


def list_runs(ledger: Ledger) -> list[str]:
    """Run ids registered in the ledger, in the order they were registered."""
    return [e.run_id for e in ledger.entries(kind="run") if e.run_id]


def policy_entry(ledger: Ledger, digest: str, *, approved_by: Iterable[str] = ()
                 ) -> LogEntry | None:
    """The ``policy`` statement publishing the policy with this digest, if logged: the first
    one signed by a key holding one of the ``approved_by`` roles, else the first one."""
    found = [e for e in ledger.entries(kind="policy")
             if isinstance(e.statement.predicate, PolicyPredicate)
             and e.statement.predicate.digest == digest]
    wanted = set(approved_by)
    if wanted and found:
        registry = ledger.registry()
        for e in found:
            reg = registry.get(e.signer)
            if reg is not None and wanted & set(reg.roles):
                return e
    return found[0] if found else None


def policy_statement(policy: Policy, at: datetime) -> PolicyPredicate:
    """The ``policy`` statement that publishes ``policy`` (its document and digest) at ``at``."""
    return PolicyPredicate(policy_id=policy.id, version=policy.version, digest=policy.digest(),
                           document=policy.document(), published_at=at)


def policy_approvers(policy: Policy) -> list[str]:
    """The roles the policy names as approving it (``governance.policy_change``), in order."""
    return list(dict.fromkeys(
        r for clause in policy.governance.policy_change for r in clause.any_of))


def policy_of_run(ledger: Ledger, state: RunState) -> Policy:
    """The policy a run is under, from the ``policy`` statement its ``run`` statement cites."""
    if state.run is None:
        raise RunError("the run is not registered, so it has no policy")
    run: RunPredicate = state.run.predicate
    entry = policy_entry(ledger, run.policy.digest)
    if entry is None:
        raise RunError(
            f"run {run.run_id!r} cites policy {run.policy.id} (digest {run.policy.digest[:12]}…) "
            "but the ledger holds no policy statement with that digest.",
            hint="Pass the policy explicitly with --policy.",
        )
    pred = entry.statement.predicate
    assert isinstance(pred, PolicyPredicate)
    policy = parse_policy(pred.document, source=f"ledger entry #{entry.index}")
    if policy.digest() != run.policy.digest:
        raise RunError(
            f"the policy document in entry #{entry.index} does not hash to the digest the run "
            "cites; the ledger is inconsistent.",
            hint="Run `scalegate verify` on this ledger.",
        )
    return policy


def state_decision(state: RunState) -> Decision | None:
    """The last recorded decision of a run, as a :class:`Decision` (None if there is none)."""
    if not state.decisions:
        return None
    d = state.decisions[-1].predicate
    return Decision(
        verdict=d.verdict, reasons=d.reasons, obligations=d.obligations,
        next_eval_at_flop=d.next_eval_at_flop, ceiling_flop=d.ceiling_flop, run_id=d.run_id,
        step=d.step, effective_flop=d.effective_flop, basis_size=d.basis_size, at=d.at,
    )


def register_run(
    ledger: Ledger, key: SigningKey, run_id: str, policy: Policy, now: datetime, *,
    org: str | None, model_name: str | None, planned: float | None,
    planned_tokens: float | None, commitments: dict[str, str | None] | None = None,
) -> RunState:
    """Register ``run_id`` under ``policy``: the run statement, citing the policy document
    its approvers published (if none did, ``key`` publishes it: a trust file may refuse
    that), and committing to ``commitments`` (``config_digest``, ``data_root``,
    ``seed_commitment``); the run's state after it."""
    digest = policy.digest()
    entry = policy_entry(ledger, digest, approved_by=policy_approvers(policy))
    if entry is None:  # nobody published it: the trainer does (a trust file may refuse it)
        done = ledger.append(sign_statement(policy_statement(policy, now), key))
        policy_ref = Ref(index=done.index, leaf_hash=done.leaf_hash.hex())
    else:
        policy_ref = ref_of(entry)
    run = RunPredicate(
        run_id=run_id, org=org or key.name.split("/", 1)[0], model=model_name or "unnamed",
        policy=PolicyRef(id=policy.id, version=policy.version, digest=digest, ref=policy_ref),
        planned_flop=planned, planned_tokens=planned_tokens, started_at=now,
        **{k: v for k, v in (commitments or {}).items() if v is not None},
    )
    ledger.append(sign_statement(run, key))
    return load_state(ledger, run_id)
