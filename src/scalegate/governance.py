"""The people side of a policy and of a pause: publish the policy, attest a safeguard,
approve a resumption, resume, and meet an obligation by recording its notification.

Each call signs one statement with the caller's own key and appends it; the gate's
:func:`~scalegate.gate.resumption` decides whether a resumption is allowed and, if
not, the :class:`~scalegate.errors.RunPaused` it raises lists exactly what is missing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from scalegate.errors import AppendConflict, RunError, RunPaused
from scalegate.gate import decide, resumption
from scalegate.ledger import (
    AppendResult,
    ApprovalPredicate,
    AttestationPredicate,
    Ledger,
    NotificationPredicate,
    Obligation,
    Ref,
    ResumePredicate,
    SigningKey,
    leaf_hash,
    now_utc,
    sign_statement,
)
from scalegate.policy import Policy, quorum_roles, seat_quorum
from scalegate.runs import (
    policy_entry,
    policy_of_run,
    policy_statement,
    ref_of,
    require_run,
)
from scalegate.state import RunState
from scalegate.units import format_duration

Clock = Callable[[], datetime]


def _ref(result: AppendResult) -> Ref:
    return Ref(index=result.index, leaf_hash=result.leaf_hash.hex())


def publish_policy(ledger: Ledger, key: SigningKey, policy: Policy) -> tuple[Ref, bool]:
    """Publish ``policy`` in the ledger, signed by someone it names as approving a change
    (``governance.policy_change``, read as every quorum is: :func:`~scalegate.policy.seat_quorum`);
    returns the entry and whether it is new. The schema holds ``policy_change`` to one
    approval (``{any_of: [roles]}``), so the one signature this statement carries is all
    of it.

    Runs cite the published document by digest, so the trainer runs under the policy its
    approvers signed (an auditor's trust file can require exactly that: ``roles: {policy:
    [...]}``). Publishing a document already in the ledger returns its entry.
    """
    change = policy.governance.policy_change
    approvers = quorum_roles(change)
    held = ledger.registry().check_signer(key.vkey, now_utc()).roles  # registered, in date
    if not seat_quorum(change, {key.name: held}).met:
        raise RunError(
            f"{key.name} may not publish policy {policy.id} {policy.version}: it holds "
            f"{', '.join(held) or 'no roles'}, and the policy names "
            f"{' or '.join(approvers)} as who approves it (governance.policy_change).",
            hint="Publish it with the key of someone in one of those roles.",
        )
    existing = policy_entry(ledger, policy.digest(), approved_by=approvers)
    if existing is not None and set(_roles_of(ledger, existing.signer)) & set(approvers):
        return ref_of(existing), False  # a copy signed by anyone else does not count
    statement = policy_statement(policy, now_utc())
    return _ref(ledger.append(sign_statement(statement, key))), True


def _roles_of(ledger: Ledger, keyid: str) -> tuple[str, ...]:
    """The roles the key ``keyid`` is registered with (none if it is not registered)."""
    reg = ledger.registry().get(keyid)
    return tuple(reg.roles) if reg else ()


def evidence_digest(evidence: str | Path | bytes | None) -> str | None:
    """SHA-256 (hex) of an evidence file or bytes; None when there is no evidence."""
    if evidence is None:
        return None
    if isinstance(evidence, bytes):
        return hashlib.sha256(evidence).hexdigest()
    path = Path(evidence)
    if not path.is_file():
        raise RunError(f"evidence file {path} does not exist", hint="Pass an existing file.")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attest(
    ledger: Ledger,
    key: SigningKey,
    safeguard: str,
    *,
    policy: Policy | None = None,
    run_id: str | None = None,
    evidence: str | Path | bytes | None = None,
    evidence_uri: str | None = None,
    valid_for: timedelta | None = None,
    now: datetime | None = None,
) -> Ref:
    """Attest that ``safeguard`` is in place, signed by ``key`` (e.g. the CISO's).

    Organisation-wide unless ``run_id`` is given. With a policy, the safeguard must be
    one it names, and ``valid_for`` defaults to the safeguard's maximum age.
    """
    now = now or now_utc()
    if run_id is not None and policy is None:
        policy = policy_of_run(ledger, require_run(ledger, run_id))
    if policy is not None:
        known = {s.id: s for s in policy.safeguards}
        if safeguard not in known:
            raise RunError(
                f"policy {policy.id} has no safeguard {safeguard!r}.",
                hint=f"Its safeguards are: {', '.join(known) or 'none'}.",
            )
        if valid_for is None:
            valid_for = known[safeguard].max_age
        elif (most := known[safeguard].max_age) is not None and valid_for > most:
            raise RunError(
                f"an attestation of {safeguard} lasts at most {format_duration(most)} under "
                f"policy {policy.id} (its max_age); {format_duration(valid_for)} was asked for.",
                hint="Give a shorter validity, or none for the policy's maximum.")
    if valid_for is not None and valid_for <= timedelta(0):
        raise RunError("an attestation's validity must be positive.",
                       hint="Give e.g. 30d, or none for the policy's maximum age.")
    pred = AttestationPredicate(
        safeguard=safeguard,
        scope="run" if run_id else "org",
        org=key.name.split("/", 1)[0],
        run_id=run_id,
        evidence_digest=evidence_digest(evidence),
        evidence_uri=evidence_uri,
        valid_from=now,
        valid_until=now + valid_for if valid_for is not None else None,
    )
    return _ref(ledger.append(sign_statement(pred, key)))


def approve(
    ledger: Ledger,
    key: SigningKey,
    run_id: str,
    rationale: str,
    *,
    role: str | None = None,
    ceiling: float | str | None = None,
    now: datetime | None = None,
) -> Ref:
    """Approve resuming the run's active pause in one of the signer's governance roles.

    ``ceiling`` caps the resumed run: an absolute effective FLOP figure, or ``"2x"`` for
    twice the effective compute at the pause.
    """
    now = now or now_utc()
    state = require_run(ledger, run_id)
    pause = state.active_pause
    if pause is None:
        raise RunError(f"run {run_id!r} is not paused; there is nothing to approve.")
    policy = policy_of_run(ledger, state)
    role = _approver_role(ledger, key, policy, role)
    _already_approved(state, pause.ref, key, role)
    pred = ApprovalPredicate(
        run_id=run_id,
        pause=pause.ref,
        role=role,
        rationale=rationale,
        ceiling_flop=_ceiling(ceiling, pause.predicate.effective_flop),
        at=now,
    )
    return _ref(ledger.append(sign_statement(pred, key)))


def _approver_role(ledger: Ledger, key: SigningKey, policy: Policy, role: str | None) -> str:
    held = _roles_of(ledger, key.vkey.keyid)
    counted = quorum_roles(policy.governance.resumption.quorum)
    needs = f"the policy's resumption quorum takes: {', '.join(counted)}"
    if role is not None and role not in counted:
        raise RunError(f"{role!r} is not a role the quorum counts ({needs}); an approval "
                       "in it could never count.",
                       hint="Approve in one of those roles, with a key registered with it.")
    usable = [r for r in held if r in counted and (role is None or r == role)]
    if len(usable) == 1:
        return usable[0]
    if not usable:
        what = (f"does not hold role {role!r}" if role is not None
                else "holds none of the roles the quorum counts")
        raise RunError(f"{key.name} {what} ({needs}; it holds: "
                       f"{', '.join(held) or 'no roles'}).",
                       hint="Approve with the key of someone in one of those roles, or "
                       "register this key with one (`scalegate ledger register-key`).")
    raise RunError(f"{key.name} holds several roles the quorum counts ({', '.join(usable)}); "
                   "say in which one it approves.", hint=f"Pass --role {usable[0]} (or "
                   f"{' or '.join(usable[1:])}).")


def _already_approved(state: RunState, pause: Ref, key: SigningKey, role: str) -> None:
    """The same key approving the same pause in the same role again adds nothing (one key
    fills one seat; in another of its roles it may fill the seat that is still open)."""
    for a in state.approvals_for(pause):
        if a.signer == key.vkey.name and a.predicate.role == role:
            raise RunError(f"{key.name} already approved pause #{pause.index} as {role} "
                           f"(entry #{a.index}); one key fills one seat of the quorum.",
                           hint="Another approver signs with their own key.")


def _ceiling(ceiling: float | str | None, at_pause: float) -> float | None:
    if ceiling is None:
        return None
    from scalegate.units import parse_quantity, parse_ratio

    text = str(ceiling).strip()
    try:
        if text.endswith(("x", "X", "×")):
            value = parse_ratio(text) * at_pause
        else:
            value = parse_quantity(text)
    except ValueError as exc:
        raise RunError(f"ceiling {ceiling!r}: {exc}", hint="Write e.g. 2x or 3e21.") from None
    if not math.isfinite(value):  # a huge multiple of the compute at the pause
        raise RunError(f"ceiling {ceiling!r} is more effective FLOP than a number holds.",
                       hint="Write e.g. 2x or 3e21.")
    return value


def resume(
    ledger: Ledger,
    key: SigningKey,
    run_id: str,
    *,
    policy: Policy | None = None,
    now: datetime | None = None,
) -> Ref:
    """Lift the run's active pause if the gate allows it; return the ``resume`` entry.

    Records the gate's decision for the resumption, then the ``resume`` statement citing
    the pause, the quorum's approvals, that decision and the paused checkpoint. Raises
    :class:`RunPaused` listing what is missing otherwise.
    """
    now = now or now_utc()
    for _ in range(_RESUME_ATTEMPTS):
        try:
            return _resume_once(ledger, key, run_id, policy, now)
        except AppendConflict:  # another writer appended meanwhile: re-read and decide again
            continue
    raise RunError(f"could not resume run {run_id!r}: the ledger kept growing while the "
                   f"resumption was written ({_RESUME_ATTEMPTS} attempts).",
                   hint="Retry when the run's other writers are quiet.")


_RESUME_ATTEMPTS = 5


def _trainer_of(ledger: Ledger, state: RunState, key: SigningKey) -> None:
    """Resuming is the trainer's statement (DESIGN.md): the key that registered the run,
    or one holding a role that key holds. Officers approve; they do not resume."""
    run = state.run
    assert run is not None
    if ledger.entry(run.index).signer == key.vkey.keyid:  # the very key, not a namesake
        return
    held = _roles_of(ledger, key.vkey.keyid)
    if not set(held) & set(run.roles):
        raise RunError(
            f"{key.name} may not resume run {state.run_id!r}: resuming is the trainer's "
            f"statement, and the run was registered by {run.signer} holding "
            f"{', '.join(run.roles) or 'no roles'} (this key holds "
            f"{', '.join(held) or 'none'}).",
            hint="Resume with the trainer's key; officers approve (`scalegate approve`).")


def _resume_once(
    ledger: Ledger, key: SigningKey, run_id: str, policy: Policy | None, now: datetime
) -> Ref:
    """The gate's decision and the ``resume`` citing it, appended in one transaction."""
    state = require_run(ledger, run_id)
    if state.active_pause is None:
        raise RunError(f"run {run_id!r} is not paused; there is nothing to resume.")
    _trainer_of(ledger, state, key)
    policy = policy or policy_of_run(ledger, state)
    res = resumption(policy, state, now=now)
    if not res.may_resume or res.decision is None or res.checkpoint is None:
        missing = res.missing_messages()
        raise RunPaused(
            f"run {run_id!r} may not resume yet; missing: " + "; ".join(missing) + ".",
            missing=missing,
        )
    assert res.pause is not None
    seq = state.next_seq
    decision = sign_statement(res.decision.to_predicate().model_copy(update={"seq": seq}), key)
    at = ledger.size
    pred = ResumePredicate(
        run_id=run_id,
        pause=res.pause,
        approvals=res.approvals,
        decision=Ref(index=at, leaf_hash=leaf_hash(decision.to_bytes()).hex()),
        checkpoint=res.checkpoint,
        ceiling_flop=res.ceiling_flop,
        at=now,
        seq=seq + 1,
    )
    _, resumed = ledger.append_many([decision, sign_statement(pred, key)], at_index=at)
    return _ref(resumed)


def open_obligations(policy: Policy, state: RunState, now: datetime) -> list[Obligation]:
    """The obligations the run owes at ``now`` and has not met, soonest deadline first."""
    return decide(policy, state, now).obligations


def notify(
    ledger: Ledger,
    key: SigningKey,
    run_id: str,
    obligation_id: str,
    *,
    evidence: str | Path | bytes,
    recipient: str | None = None,
    sent_at: datetime | None = None,
    now: datetime | None = None,
    held_to: Policy | None = None,
) -> Ref:
    """Record that the run's obligation ``obligation_id`` was met: the recipient was
    notified at ``sent_at`` (default: now) with ``evidence`` (what was sent: its SHA-256 is
    recorded, not its content). Signed by ``key``, which must hold the role of the key
    that registered the run or one of the policy's governance roles; the statement cites
    the decision that recorded the obligation. Refuses an obligation the run does not owe
    (or already met), another recipient than the one the policy names, and a time to come.

    ``held_to``: an obligation of another policy the run is held to (a law, whatever policy
    the run registered under, as ``scalegate verify --policy`` holds it); the statement
    then cites the compute statement that reached the threshold.
    """
    now = now or now_utc()
    sent_at = sent_at or now
    state = require_run(ledger, run_id)
    policy = policy_of_run(ledger, state)
    _may_notify(ledger, state, key, policy)
    if held_to is not None and held_to.digest() != policy.digest():
        return _notify_held_to(ledger, key, state, held_to, obligation_id, evidence=evidence,
                               recipient=recipient, sent_at=sent_at, now=now)
    done = next((n for n in state.notifications if n.predicate.obligation_id == obligation_id),
                None)
    if done is not None:
        raise RunError(f"obligation {obligation_id} of run {run_id!r} was already met by "
                       f"notification #{done.index}.")
    owed = {o.id: o for o in open_obligations(policy, state, now)}
    obligation = owed.get(obligation_id)
    if obligation is None:
        raise RunError(f"run {run_id!r} owes no obligation {obligation_id!r}.",
                       hint=f"Open obligations: {', '.join(owed) or 'none'} "
                       f"(see `scalegate run status {run_id}`).")
    _check_notice(obligation_id, obligation.recipient, recipient, sent_at, now)
    recorded = _recording_decision(state, obligation_id)
    if recorded is None:
        raise RunError(f"no decision of run {run_id!r} records obligation {obligation_id} yet.",
                       hint="Let the supervisor record its decision (reopen the run), then "
                       "notify.")
    return _append_notice(ledger, key, run_id, recorded, obligation_id, obligation.recipient,
                          sent_at, evidence)


def _notify_held_to(
    ledger: Ledger, key: SigningKey, state: RunState, policy: Policy, obligation_id: str, *,
    evidence: str | Path | bytes, recipient: str | None, sent_at: datetime, now: datetime,
) -> Ref:
    """Meet an obligation that ``policy`` (not the run's own) creates; see :func:`notify`."""
    from scalegate.audit import hold_runs
    from scalegate.runs import run_log_entries, to_entries
    from scalegate.state import record_type

    run_id = state.run_id or ""
    records = [record_type(type(e.predicate))(ref=e.ref, predicate=e.predicate, signer=e.signer,
                                              roles=e.roles, logged_at=e.logged_at)
               for e in to_entries(run_log_entries(ledger, run_id), ledger.registry())]
    found = [f for f in hold_runs(policy, {run_id: records}, now=now).findings
             if f.kind == "notification" and f.subject == obligation_id]
    owed = [f for f in found if f.status in ("due", "missed", "owed")]
    if not owed:
        raise RunError(
            f"under {policy.id} {policy.version}, run {run_id!r} owes no open obligation "
            f"{obligation_id!r}" + (f" ({found[0].status})." if found else "."),
            hint=f"`scalegate verify --policy {policy.id}` lists what the run owes under it.")
    threshold = next(t for t in policy.compute.thresholds
                     if t.action == "notify" and t.obligation_id == obligation_id)
    owed_to = threshold.recipient or "?"
    _check_notice(obligation_id, owed_to, recipient, sent_at, now)
    return _append_notice(ledger, key, run_id, owed[0].refs[0], obligation_id, owed_to,
                          sent_at, evidence)


def _check_notice(obligation_id: str, owed_to: str, recipient: str | None, sent_at: datetime,
                  now: datetime) -> None:
    """Refuse a notice to another recipient than the one owed, or sent in the future."""
    if recipient is not None and recipient != owed_to:
        raise RunError(f"obligation {obligation_id} is owed to {owed_to!r}, not "
                       f"{recipient!r}.", hint="Leave out --recipient, or give the policy's.")
    if sent_at > now:
        raise RunError(f"the notification cannot have been sent at {sent_at:%Y-%m-%d %H:%M} "
                       "UTC: that is still to come.", hint="Record it once it is sent.")


def _append_notice(ledger: Ledger, key: SigningKey, run_id: str, cited: Ref,
                   obligation_id: str, owed_to: str, sent_at: datetime,
                   evidence: str | Path | bytes) -> Ref:
    """The ``notification`` statement citing ``cited``, with the evidence by digest."""
    digest = evidence_digest(evidence)
    assert digest is not None
    pred = NotificationPredicate(run_id=run_id, obligation=cited, obligation_id=obligation_id,
                                 recipient=owed_to, sent_at=sent_at, content_digest=digest)
    return _ref(ledger.append(sign_statement(pred, key)))


def _recording_decision(state: RunState, obligation_id: str) -> Ref | None:
    """The first decision of the run whose obligations include ``obligation_id``."""
    return next((d.ref for d in state.decisions
                 if any(o.id == obligation_id for o in d.predicate.obligations)), None)


def _may_notify(ledger: Ledger, state: RunState, key: SigningKey, policy: Policy) -> None:
    """The trainer (the run's registering key or its role) or a governance role notifies."""
    run = state.run
    assert run is not None
    held = set(_roles_of(ledger, key.vkey.keyid))
    if ledger.entry(run.index).signer == key.vkey.keyid or held & (
            set(run.roles) | set(policy.governance.roles)):
        return
    raise RunError(
        f"{key.name} may not record a notification for run {state.run_id!r}: it holds "
        f"{', '.join(sorted(held)) or 'no roles'}; the run's trainer "
        f"({', '.join(run.roles) or run.signer}) or a governance role of policy {policy.id} "
        f"({', '.join(policy.governance.roles)}) does.",
        hint="Sign it with the trainer's or an officer's key.")
