"""What one rank spent since the ranks last compared notes: FLOP by phase, and tokens.

A rank counts its own work with no communication: FLOP per input signature is measured
once (``StepCounter``) and then looked up. Framework callbacks count each micro-batch's
*non-padding* tokens (from its ``attention_mask``, else the pad token) and file the measured
FLOP of the padded batch pro rata, so padding is not counted as training compute while the
attention the batch really ran is. ``drain`` hands the tally over as one flat vector (FLOP
per canonical phase, then tokens, then the most FLOP one step of this rank spent) ready for
a SUM all-reduce, and starts a new one. Summed over the ranks, the last is a bound on what
one step of the whole job spends, from which the next sync step is planned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from scalegate.compute import PHASES
from scalegate.errors import RunError

if TYPE_CHECKING:
    import torch

    from scalegate.compute import LossFn, Measurement, StepCounter, StepFlop

TokensOf = Callable[[Any], float]


def _first_tensor(obj: Any) -> torch.Tensor | None:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, tuple | list):
        for item in obj:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def batch_tokens(batch: Any, pad_token_id: int | None = None) -> tuple[float, float]:
    """``(tokens, positions)`` of a batch: non-padding tokens and all input positions.

    A mapping's ``attention_mask`` counts the tokens; else its ``input_ids`` not equal to
    ``pad_token_id``. Otherwise the first tensor found: token ids (an integer tensor) count
    one token per element, anything else one sample per row.
    """
    import torch

    if isinstance(batch, Mapping):
        mask = batch.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            return float(mask.sum().item()), float(mask.numel())
        ids = batch.get("input_ids")
        if isinstance(ids, torch.Tensor):
            if pad_token_id is not None:
                return float((ids != pad_token_id).sum().item()), float(ids.numel())
            return float(ids.numel()), float(ids.numel())
    first = _first_tensor(batch)
    if first is None:
        raise RunError(
            f"cannot tell how many tokens a batch of type {type(batch).__name__} holds.",
            hint="Pass tokens_of=lambda batch: <number of tokens> to the callback.",
        )
    if first.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        return float(first.numel()), float(first.numel())
    rows = float(first.shape[0]) if first.dim() else 1.0
    return rows, rows


class Meter:
    """One rank's FLOP and tokens since the last :meth:`drain`.

    FLOP of a step comes from, in order: the caller's ``flop`` (``declared``); the compute
    counter on the batch when a model is given (``measured``, once per input signature);
    ``flop_per_token`` × tokens, else 6·N × tokens (``architecture``).
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        *,
        flop_per_token: float | None = None,
        loss_fn: LossFn | None = None,
        tokens_of: TokensOf | None = None,
        pad_token_id: int | None = None,
    ) -> None:
        self.model = model
        self.flop_per_token = flop_per_token
        self.loss_fn = loss_fn
        self.tokens_of = tokens_of
        self.pad_token_id = pad_token_id
        self._counter: StepCounter | None = None
        self.method = "measured"
        self._flop = dict.fromkeys(PHASES, 0.0)
        self._tokens = 0.0
        self._in_step = 0.0  # FLOP of the steps not yet ended
        self._peak = 0.0  # the most FLOP one ended step spent since the last drain

    @property
    def counter(self) -> StepCounter:
        """The :class:`~scalegate.compute.StepCounter` (created on first use)."""
        if self._counter is None:
            from scalegate.compute import StepCounter

            self._counter = StepCounter(self.model, loss_fn=self.loss_fn)
        return self._counter

    def add(
        self, flop: float, phase: str, *, tokens: float, method: str, recomputation: float = 0.0
    ) -> None:
        """Add FLOP spent in ``phase`` (and recomputation) on ``tokens`` tokens."""
        if phase not in self._flop:
            raise RunError(f"unknown phase {phase!r}.", hint=f"Phases are: {', '.join(PHASES)}.")
        self._flop[phase] += float(flop)
        self._flop["recomputation"] += float(recomputation)
        self._tokens += float(tokens)
        self._in_step += float(flop) + float(recomputation)
        self.method = method

    def end_steps(self, steps: int = 1) -> None:
        """``steps`` optimizer steps ended: their FLOP counts towards the per-step peak."""
        self._peak = max(self._peak, self._in_step / max(steps, 1))
        self._in_step = 0.0

    # --- a plain loop's step -------------------------------------------------------------

    def count_step(
        self, tokens: float, flop: float | None = None, phase: str = "pretraining",
        batch: Any = None,
    ) -> None:
        """One step of a hand-written loop, as :meth:`Supervisor.step` counts it."""
        if flop is not None:
            self.add(flop, phase, tokens=tokens, method="declared")
        elif self.model is not None and batch is not None:
            f = self.counter.flop(batch)
            self.add(f.model_flop, phase, tokens=tokens, method="measured",
                     recomputation=f.recomputation)
        else:
            self.add(self._per_token() * tokens, phase, tokens=tokens, method="architecture")

    def _per_token(self) -> float:
        if self.flop_per_token is None:
            if self.model is None:
                raise RunError(
                    "step() needs flop=..., or a model (with batch=... for measured counts), "
                    "or flop_per_token.",
                )
            n = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            self.flop_per_token = 6.0 * n
        return self.flop_per_token

    # --- a framework's micro-batch -------------------------------------------------------

    def tokens_in(self, batch: Any) -> tuple[float, float]:
        """``(tokens, positions)`` of ``batch`` (``tokens_of`` if given: no padding then)."""
        if self.tokens_of is not None:
            n = float(self.tokens_of(batch))
            return n, n
        return batch_tokens(batch, self.pad_token_id)

    def measure(self, batch: Any) -> Measurement:
        """Context manager counting the framework's own forward and backward of ``batch``
        the first time its signature is seen; a look-up afterwards."""
        return self.counter.measure(batch)

    def count_batch(self, batch: Any, phase: str = "pretraining", *,
                    measured: StepFlop | None = None) -> None:
        """One micro-batch a framework trained on: its non-padding tokens, and its measured
        FLOP (``measured``, else counted now by one extra step per new signature) filed pro
        rata to those tokens; or ``flop_per_token`` × tokens when that is given."""
        tokens, positions = self.tokens_in(batch)
        if self.flop_per_token is not None or self.model is None:
            self.add(self._per_token() * tokens, phase, tokens=tokens, method="architecture")
            return
        f = measured if measured is not None else self.counter.flop(batch)
        share = tokens / positions if positions else 1.0
        self.add(f.model_flop * share, phase, tokens=tokens, method="measured",
                 recomputation=f.recomputation * share)

    # --- handing over --------------------------------------------------------------------

    def drain(self) -> list[float]:
        """FLOP per phase (in :data:`PHASES` order), tokens, then the per-step peak; the
        tally restarts at zero."""
        out = [self._flop[p] for p in PHASES] + [self._tokens, self._peak]
        self._flop = dict.fromkeys(PHASES, 0.0)
        self._tokens = self._peak = 0.0
        return out


def unpack(vector: list[float]) -> tuple[dict[str, float], float, float]:
    """``drain``'s vector back into ``({phase: FLOP}, tokens, step peak)`` (zero phases left
    out)."""
    flop = {p: v for p, v in zip(PHASES, vector, strict=False) if v}
    return flop, vector[len(PHASES)], vector[len(PHASES) + 1]


__all__ = ["Meter", "batch_tokens", "unpack"]
