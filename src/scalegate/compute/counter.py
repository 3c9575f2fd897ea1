"""Measured training compute: count one real step per input signature, then only multiply.

``torch.utils.flop_counter.FlopCounterMode`` is slow and does not mix with ``torch.compile``,
so it never wraps every step. A :class:`StepCounter` counts the first step of each distinct
input signature (tensor shapes, dtypes, devices, train/eval, grad mode) and caches the
result; every later step with that signature costs a signature computation and a dictionary
look-up. Counting happens either around the caller's own first step
(``with counter.measure(batch): ...``, no extra work) or by running one extra forward and
backward (``counter.flop(batch)`` / :func:`count`, side effects undone: gradients, buffers
and RNG state are restored).

What is counted: every operator ``FlopCounterMode`` has a formula for (matmuls,
convolutions, fused attention), plus the CPU fused-attention kernels it lacks. Elementwise
work, norms, softmax, reductions, embedding look-ups and the optimizer update are linear in
the tensor sizes and left out, as in every published FLOP count. Any other operator that
runs is reported in ``StepFlop.uncounted_ops``, never silently dropped.

Recomputation (forward work redone during backward: activation checkpointing, and the
attention scores a fused attention backward recomputes) is reported separately.

Count an eager model: inside ``torch.compile`` the dispatcher sees no individual operators.
Compile after the first step of each signature, or ``count()`` an eager copy.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from scalegate.compute.step import StepFlop
from scalegate.errors import ComputeError

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]

aten = torch.ops.aten

# --- formulas torch lacks -------------------------------------------------------------------


def _attn_shapes(q: Any, k: Any, v: Any) -> tuple[int, int, int, int, int, int]:
    b, h, sq, dq = q
    sk, dv = k[-2], v[-1]
    return b, h, sq, sk, dq, dv


def _cpu_flash_forward(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
    b, h, sq, sk, dq, dv = _attn_shapes(q, k, v)
    return 2 * b * h * sq * sk * dq + 2 * b * h * sq * sk * dv


def _cpu_flash_backward(
    grad_out: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kw: Any
) -> int:
    # Same five matmuls torch counts for the CUDA kernels: scores recomputed, then the
    # gradients of scores, V, Q and K.
    b, h, sq, sk, dq, dv = _attn_shapes(q, k, v)
    return 2 * b * h * sq * sk * (3 * dq + 2 * dv)


_CUSTOM_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}

# Fused attention backwards whose count includes recomputing Q·Kᵀ: that part is
# recomputation, not model compute. Arguments are (grad_out, query, key, value, ...).
_ATTENTION_BACKWARDS = {
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_flash_attention_backward,
    aten._scaled_dot_product_cudnn_attention_backward,
}

# --- operators whose cost is linear in the data and conventionally not counted --------------

_LINEAR_TAGS = {torch.Tag.pointwise, torch.Tag.reduction, torch.Tag.data_dependent_output}
_LINEAR_NAMESPACES = {"profiler", "prim", "c10d", "_c10d_functional", "_dtensor"}
_LINEAR_PREFIXES = ("_foreach_", "_fused_adam", "_fused_sgd", "native_dropout", "_to_copy")
_LINEAR_NAMES_TEXT = """
    _softmax _softmax_backward_data _log_softmax _log_softmax_backward_data _safe_softmax
    native_layer_norm native_layer_norm_backward native_group_norm native_group_norm_backward
    native_batch_norm native_batch_norm_backward _native_batch_norm_legit
    _native_batch_norm_legit_no_training _native_batch_norm_legit_functional
    _fused_rms_norm _fused_rms_norm_backward
    nll_loss_forward nll_loss_backward nll_loss2d_forward nll_loss2d_backward
    mse_loss mse_loss_backward binary_cross_entropy binary_cross_entropy_backward
    embedding embedding_dense_backward _embedding_bag _embedding_bag_backward
    empty empty_like empty_strided new_empty new_empty_strided new_zeros new_ones
    zeros zeros_like ones ones_like full full_like fill fill_ zero_ scalar_tensor
    arange linspace randn randn_like rand rand_like randint randperm normal_ uniform_
    bernoulli bernoulli_ copy copy_ clone lift_fresh lift_fresh_copy detach alias
    _unsafe_view _reshape_alias tril triu tril_ triu_ cat stack split split_with_sizes
    unbind repeat repeat_interleave index index_put index_put_ index_select index_add
    index_add_ gather scatter scatter_ scatter_add scatter_add_ masked_scatter where
    slice_backward select_backward slice_scatter select_scatter as_strided_scatter
    constant_pad_nd cumsum sort topk max_pool2d_with_indices max_pool2d_with_indices_backward
    avg_pool2d avg_pool2d_backward _adaptive_avg_pool2d _adaptive_avg_pool2d_backward
    upsample_nearest2d upsample_bilinear2d rsub masked_fill masked_fill_ sym_size
"""
_LINEAR_NAMES = frozenset(_LINEAR_NAMES_TEXT.split())


def _is_linear_cost(func: Any) -> bool:
    if getattr(func, "is_view", False):
        return True
    if any(tag in _LINEAR_TAGS for tag in getattr(func, "tags", ())):
        return True
    packet = getattr(func, "_overloadpacket", None)
    namespace = getattr(packet, "_qualified_op_name", "").split("::")[0]
    name = getattr(packet, "__name__", str(func))
    return (
        namespace in _LINEAR_NAMESPACES
        or name in _LINEAR_NAMES
        or name.startswith(_LINEAR_PREFIXES)
    )


# --- the recorder ---------------------------------------------------------------------------


class _Recorder(TorchDispatchMode):
    """Sits above FlopCounterMode and files each operator's FLOP by pass; notes the rest."""

    def __init__(self, counter: FlopCounterMode) -> None:
        super().__init__()
        # Read through the counter each time: it may swap its dict (e.g. around torch.cond).
        self._counter = counter
        self.kind = {"forward": 0, "backward": 0, "recomputation": 0}
        self.by_op: dict[str, int] = {}
        self.uncounted: dict[str, int] = {}

    def _total(self) -> int:
        counts = self._counter.flop_counts
        return sum(counts["Global"].values()) if "Global" in counts else 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        before = self._total()
        out = func(*args, **(kwargs or {}))
        flop = self._total() - before
        in_backward = torch._C._current_graph_task_id() != -1
        # The autograd engine runs backward formulas with grad mode off; checkpointing turns
        # it back on to re-run the forward. (A double backward with create_graph=True would
        # also look like this; it is rare in training and still counted, as recomputation.)
        if not in_backward:
            kind = "forward"
        elif torch.is_grad_enabled():
            kind = "recomputation"
        else:
            kind = "backward"
        name = str(getattr(func, "_overloadpacket", func))
        if flop:
            self.by_op[name] = self.by_op.get(name, 0) + flop
            if func._overloadpacket in _ATTENTION_BACKWARDS and kind == "backward":
                b, h, sq, dq = args[1].shape
                redo = 2 * b * h * sq * args[2].shape[-2] * dq
                self.kind["recomputation"] += redo
                flop -= redo
            self.kind[kind] += flop
        elif not _is_linear_cost(func):
            self.uncounted[name] = self.uncounted.get(name, 0) + 1
        return out


@contextmanager
def _counting() -> Iterator[_Recorder]:
    flops = FlopCounterMode(display=False, custom_mapping=_CUSTOM_FORMULAS)
    with flops, _Recorder(flops) as recorder:
        yield recorder


def _result(recorder: _Recorder, signature: str) -> StepFlop:
    k = recorder.kind
    return StepFlop(
        total=float(k["forward"] + k["backward"] + k["recomputation"]),
        forward=float(k["forward"]),
        backward=float(k["backward"]),
        recomputation=float(k["recomputation"]),
        by_op={n: float(v) for n, v in sorted(recorder.by_op.items())},
        uncounted_ops=dict(sorted(recorder.uncounted.items())),
        signature=signature,
    )


# --- signatures -----------------------------------------------------------------------------


def _sig(obj: Any) -> Hashable:
    if isinstance(obj, torch.Tensor):
        return (obj.shape, obj.dtype, obj.device.type, obj.requires_grad)
    if isinstance(obj, tuple | list):
        return tuple(_sig(x) for x in obj)
    if isinstance(obj, Mapping):
        return tuple((k, _sig(v)) for k, v in obj.items())
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return type(obj).__qualname__


def _describe(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        dtype = str(obj.dtype).removeprefix("torch.")
        return f"{dtype}[{','.join(map(str, obj.shape))}]@{obj.device.type}"
    if isinstance(obj, tuple | list):
        return "(" + ", ".join(_describe(x) for x in obj) + ")"
    if isinstance(obj, Mapping):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in obj.items()) + "}"
    return repr(obj) if obj is None or isinstance(obj, bool | int | float | str) else type(
        obj
    ).__qualname__


# --- running one step -----------------------------------------------------------------------


def _default_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    try:
        if isinstance(batch, Mapping):
            out = model(**batch)
        elif isinstance(batch, tuple | list):
            out = model(*batch)
        else:
            out = model(batch)
    except TypeError as exc:  # the batch is not the model's arguments (inputs and targets)
        raise ComputeError(
            f"cannot count the FLOP of a step by calling the model on its batch "
            f"{_describe(batch)}: {exc}",
            hint="Pass loss_fn=lambda model, batch: <scalar loss> (to Supervisor.open or the "
            "callback), or the step's flop=... to step().",
        ) from exc
    loss = getattr(out, "loss", None)  # Hugging Face ModelOutput
    if isinstance(loss, torch.Tensor):
        return loss
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ComputeError(
            f"the model returned {type(out).__name__}, not a tensor or an output with .loss.",
            hint="Pass loss_fn=lambda model, batch: ... returning a scalar loss.",
        )
    # Summing to a scalar adds only elementwise work; every matmul's backward is the same.
    return out if out.dim() == 0 else out.float().sum()


@contextmanager
def _side_effects_undone(model: torch.nn.Module) -> Iterator[None]:
    params = list(model.parameters())
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    try:
        for p in params:
            p.grad = None
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        with torch.no_grad():
            for live, saved in buffers:
                live.copy_(saved)


def _run_step(
    model: torch.nn.Module, batch: Any, loss_fn: LossFn | None, backward: bool
) -> StepFlop:
    with _side_effects_undone(model), _counting() as recorder:
        if backward:
            loss = (loss_fn or _default_loss)(model, batch)
            if not loss.requires_grad:
                raise ComputeError(
                    "the loss does not require grad, so no backward pass can be counted.",
                    hint="Put the model in train mode with trainable parameters, or pass "
                    "backward=False to count the forward pass only.",
                )
            loss.backward()
        else:
            with torch.no_grad():
                (loss_fn or _default_loss)(model, batch)
    return _result(recorder, _describe(batch))


def count(
    model: torch.nn.Module,
    example_inputs: Any,
    loss_fn: LossFn | None = None,
    *,
    backward: bool | None = None,
) -> StepFlop:
    """Count one step of ``model`` on ``example_inputs`` (pre-flight estimate).

    ``example_inputs`` is a batch as the training loop sees it: a tensor, a tuple (passed
    as positional arguments) or a mapping (keyword arguments). ``loss_fn(model, batch)``
    returns the scalar loss; by default the model's output (its ``.loss`` if it has one,
    else the output summed). ``backward`` defaults to ``model.training``. The model may
    live on the ``meta`` device: shapes are all a count needs. Gradients, buffers and RNG
    state are left as they were.
    """
    do_backward = model.training if backward is None else backward
    return _run_step(model, example_inputs, loss_fn, do_backward)


class Measurement:
    """What ``StepCounter.measure`` yields; ``flop`` is set on entry (cached) or on exit."""

    __slots__ = ("_counter", "_key", "_recorder", "_scope", "_text", "counted", "flop")

    def __init__(self, counter: StepCounter, key: Hashable, text: Callable[[], str]) -> None:
        self._counter, self._key, self._text = counter, key, text
        self._scope: Any = None
        self._recorder: _Recorder | None = None
        self.flop: StepFlop | None = counter._cache.get(key)
        self.counted = False

    def __enter__(self) -> Measurement:
        if self.flop is None:
            self._scope = _counting()
            self._recorder = self._scope.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._scope is None:
            self._counter.hits += 1
            return
        self._scope.__exit__(exc_type, exc, tb)
        self._scope = None
        if exc_type is None and self._recorder is not None:
            self.flop = _result(self._recorder, self._text())
            self._counter._cache[self._key] = self.flop
            self._counter.misses += 1
            self.counted = True


class StepCounter:
    """Per-signature cache of one training step's FLOP.

    >>> counter = StepCounter(model, loss_fn=lambda m, b: m(*b))      # doctest: +SKIP
    >>> for batch in loader:                                           # doctest: +SKIP
    ...     with counter.measure(batch) as m:                          # counts the 1st step
    ...         loss = loss_fn(model, batch); loss.backward()          # of each signature
    ...     account.add_step(m.flop)

    or, letting the counter run one extra forward+backward for a new signature:
    ``counter.flop(batch)``. The signature is the batch's tensor shapes, dtypes, devices and
    requires_grad flags, plain scalar arguments, the model's train/eval mode and grad mode.
    """

    def __init__(self, model: torch.nn.Module | None = None, loss_fn: LossFn | None = None) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self._cache: dict[Hashable, StepFlop] = {}
        self.hits = 0
        self.misses = 0

    def signature(self, batch: Any, key: Hashable = None) -> Hashable:
        """The cache key of a step on ``batch`` (or of an explicit ``key``) in the current mode."""
        training = self.model.training if self.model is not None else None
        return (_sig(batch) if key is None else key, training, torch.is_grad_enabled())

    @property
    def cache(self) -> Mapping[Hashable, StepFlop]:
        """Every signature counted so far."""
        return self._cache

    def lookup(self, batch: Any, key: Hashable = None) -> StepFlop | None:
        """The cached count for this batch's signature, or None."""
        return self._cache.get(self.signature(batch, key))

    def measure(self, batch: Any = None, *, key: Hashable = None) -> Measurement:
        """Context manager around the caller's own forward+backward of ``batch``.

        On a new signature the step inside is counted (slower, once); afterwards it is a
        look-up. ``key`` replaces the batch's computed signature when the caller knows
        better (e.g. the sequence length). ``measurement.flop`` holds the result.
        """
        if batch is None and key is None:
            raise ComputeError("measure() needs the batch or an explicit key.")
        sig = self.signature(batch, key)
        return Measurement(self, sig, lambda: _describe(batch) if key is None else repr(key))

    def flop(self, batch: Any, key: Hashable = None) -> StepFlop:
        """FLOP of one step on ``batch``: cached, or counted now by one extra step."""
        sig = self.signature(batch, key)
        hit = self._cache.get(sig)
        if hit is not None:
            self.hits += 1
            return hit
        if self.model is None:
            raise ComputeError(
                "this StepCounter has no model, so it cannot run a step to count.",
                hint="Construct it with StepCounter(model, loss_fn=...), or use measure().",
            )
        result = count(self.model, batch, self.loss_fn)
        self._cache[sig] = result
        self.misses += 1
        return result

    def clear(self) -> None:
        """Forget every counted signature (e.g. after changing the model)."""
        self._cache.clear()


__all__ = ["LossFn", "Measurement", "StepCounter", "count"]
