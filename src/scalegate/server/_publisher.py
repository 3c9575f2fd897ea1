"""What ``/checkpoint`` shows: checkpoints signed as the log grows, published once the
witness policy accepts them (Tessera's witness-gated publication).

Every ``interval`` (and at once, at most every :data:`MIN_GAP_S`, when a client waits
for a receipt: :meth:`Publisher.poke`) the publisher signs a checkpoint when the log has
grown past the last one (if it holds the log key), asks each witness of the policy to
cosign it (in
parallel, each within ``timeout``; a witness that is behind is caught up from the size
it names), attaches the cosignatures to the stored checkpoint, and publishes it when at
least ``quorum`` of the policy's witnesses have cosigned. Appends never wait for this; a
witness that is slow or down only delays publication. When the policy cannot be met,
the previous checkpoint stays published and :attr:`Publisher.behind` says why.
Without witnesses every checkpoint is published as soon as it is signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from scalegate.audit import CosigningWitness, witness_ledger
from scalegate.errors import ScalegateError
from scalegate.ledger import Checkpoint, Ledger, cosignatures, parse_note, verify_note

__all__ = ["MIN_GAP_S", "Publisher", "WitnessPolicy"]

#: The least time between two rounds (a round woken by a waiting client included).
MIN_GAP_S = 0.02


@dataclass(frozen=True)
class WitnessPolicy:
    """Which witnesses cosign, how many of them publication needs, how long to wait."""

    witnesses: Sequence[CosigningWitness]
    quorum: int
    timeout_s: float = 10.0


class Publisher:
    """See the module docstring; :meth:`step` does one round, :meth:`run` repeats it."""

    def __init__(self, ledger: Ledger, policy: WitnessPolicy | None, *, interval_s: float,
                 can_sign: bool) -> None:
        self.ledger = ledger
        self.policy = policy
        self.interval_s = interval_s
        self.can_sign = can_sign
        self.published: str | None = None
        self.published_size = -1
        self.behind = ""
        self.changed = asyncio.Event()
        self._poked = asyncio.Event()
        # One thread per witness, and no new request to a witness whose last one is still
        # running: a witness that hangs cannot hold up the others.
        self._pools = [ThreadPoolExecutor(max_workers=1) for _ in
                       (policy.witnesses if policy else ())]
        self._running: list[Future[str] | None] = [None] * len(self._pools)

    def close(self) -> None:
        """Stop asking witnesses (a request under way is not waited for)."""
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)

    def poke(self) -> None:
        """Run a round soon: a client is waiting for a checkpoint."""
        self._poked.set()

    async def run(self) -> None:
        """Publish every ``interval_s`` (or sooner when poked) until cancelled."""
        while True:
            self._poked.clear()
            try:
                if await asyncio.to_thread(self.step):
                    self.changed.set()
                    self.changed = asyncio.Event()
            except ScalegateError as exc:
                self.behind = exc.message
                print(f"scalegate serve: publishing: {exc.message}", file=sys.stderr)
            await asyncio.sleep(MIN_GAP_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.interval_s - MIN_GAP_S)

    def step(self) -> bool:
        """One round; whether a newer checkpoint was published."""
        led = self.ledger
        note = led.latest_checkpoint()
        size = -1 if note is None else _size(note)
        if self.can_sign and led.size > max(size, 0):
            note = led.checkpoint()
            size = _size(note)
        if note is None or size <= self.published_size:
            return False
        if self.policy is not None:
            note = self._witnessed(note, size, self.policy)
            if note is None:
                return False
        self.published, self.published_size, self.behind = note, size, ""
        return True

    def _witnessed(self, note: str, size: int, policy: WitnessPolicy) -> str | None:
        """The stored note once the policy's witnesses cosigned it, else ``None``."""
        for i, w in enumerate(policy.witnesses):
            running = self._running[i]
            if running is None or running.done():
                self._running[i] = self._pools[i].submit(witness_ledger, self.ledger, w)
        asked = [f for f in self._running if f is not None]
        wait(asked, timeout=policy.timeout_s)
        problems = [f.exception() for f in asked if f.done() and f.exception()]
        stored = self.ledger.checkpoint_at(size) or note
        got = _cosigners(stored, self.ledger, policy)
        if got >= policy.quorum:
            return stored
        why = "; ".join(str(p) for p in problems[:3]) or "a witness did not answer in time"
        self.behind = (f"the checkpoint of size {size} has {got} of the {policy.quorum} "
                       f"witness cosignatures publication needs ({why}); the checkpoint of "
                       f"size {max(self.published_size, 0)} stays published.")
        print(f"scalegate serve: {self.behind}", file=sys.stderr)
        return None


def _size(note: str) -> int:
    return Checkpoint.parse(parse_note(note)[0]).size


def _cosigners(note: str, ledger: Ledger, policy: WitnessPolicy) -> int:
    """How many distinct witness keys of the policy validly cosigned ``note``."""
    verifiers = list({(w.verifier.name, w.verifier.key_id): w.verifier
                      for w in policy.witnesses}.values())
    try:
        opened = verify_note(note, [ledger.log_vkey, *verifiers])
    except ScalegateError:
        return 0
    return len({(c.verifier.name, c.verifier.key_id) for c in cosignatures(opened)})
