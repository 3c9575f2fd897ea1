"""Canonical digests of what training commits to: weights, optimizer state, batches.

A state's digest is BLAKE3 (32 bytes) over its named tensors in sorted name order, each as
its name, dtype, shape and raw bytes (in memory order of a contiguous CPU copy): the same
tensors give the same digest on any machine, a single flipped bit another. Optimizer
state is named ``optimizer/<param index>/<key>`` (plain numbers, such as a step count,
are included as text). BLAKE3 rather than SHA-256 because it is the faster here:
``benchmarks/bench_transcript.py`` measures both (about 3x on one core, more on several,
which a state digest uses: the weights of a large model are hundreds of gigabytes).

A batch's digest covers its tensors (a tensor, a tuple or list of them, or a mapping by
name) the same way; a segment commits to the RFC 6962 Merkle root of its batches' digests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

__all__ = ["batch_digest", "batches_root", "example_digests", "state_digest",
           "tensors_digest"]


def tensors_digest(named: Iterable[tuple[str, Any]], *, parallel: bool = False) -> str:
    """Hex BLAKE3 of named tensors (and plain values), in sorted name order (``parallel``:
    on every core, for large states)."""
    from blake3 import blake3

    h = blake3(max_threads=blake3.AUTO if parallel else 1)
    for name, value in sorted(named, key=itemgetter(0)):
        if hasattr(value, "detach"):
            h.update(f"{name}\0{value.dtype}:{tuple(value.shape)}\0".encode())
            if value.numel():
                h.update(_memory(value))
        else:
            h.update(f"{name}\0value:{value!r}\0".encode())
    return h.hexdigest()


def _memory(t: Any) -> Any:
    """A tensor's bytes in memory order, copied only when not already a contiguous CPU
    tensor (a step's batch is hashed as it trains: each torch call here costs)."""
    if t.requires_grad:
        t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    try:
        return t.numpy().reshape(-1).view("u1")
    except TypeError:  # a dtype numpy lacks (bfloat16...): its bytes all the same
        return t.reshape(-1).view(_byte_dtype()).numpy()


def state_digest(model: Any, optimizer: Any = None) -> str:
    """The digest of a model's parameters and buffers (its ``state_dict``) and, if given,
    its optimizer's state."""
    named: list[tuple[str, Any]] = [(f"model/{k}", v) for k, v in model.state_dict().items()]
    if optimizer is not None:
        for pid, slots in optimizer.state_dict().get("state", {}).items():
            named.extend((f"optimizer/{pid}/{k}", v) for k, v in slots.items())
    return tensors_digest(named, parallel=True)


def batch_digest(batch: Any) -> bytes:
    """The 32-byte digest of a batch's tensors: a tensor, or sequences and mappings of them
    nested to any depth (a step's micro-batches, say), each tensor named by its path."""
    return bytes.fromhex(tensors_digest(_flatten(batch, "")))


def _flatten(obj: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, tuple | list):
        items = [(f"{i:04d}", v) for i, v in enumerate(obj)]
    else:
        return [(prefix or "0000", obj)]
    out: list[tuple[str, Any]] = []
    for name, value in items:
        path = f"{prefix}/{name}" if prefix else name
        if isinstance(value, Mapping | tuple | list):
            out.extend(_flatten(value, path))
        else:
            out.append((path, value))
    return out


def example_digests(batch: Any) -> list[bytes]:
    """The digest of each example in a batch: row ``i`` of every tensor it holds, named as
    :func:`batch_digest` names them, so an example's digest is :func:`batch_digest` of the
    example as the dataset returns it (before the loader stacks it). A list of batches
    (a step's micro-batches) gives the examples of each."""
    if isinstance(batch, list) and batch and all(
            isinstance(b, Mapping | tuple | list) for b in batch):
        return [d for micro in batch for d in example_digests(micro)]
    named = _flatten(batch, "")
    rows = {len(v) for _, v in named if hasattr(v, "detach") and v.dim() > 0}
    if len(rows) != 1:
        raise ValueError("a batch's tensors do not share one leading (example) dimension")
    (n,) = rows
    return [bytes.fromhex(tensors_digest(
        (k, v[i] if hasattr(v, "detach") and v.dim() > 0 else v) for k, v in named))
        for i in range(n)]


def batches_root(digests: list[bytes]) -> str:
    """The RFC 6962 Merkle root (hex) over a segment's batch digests, in order."""
    from scalegate.ledger import merkle

    return merkle.root([merkle.leaf_hash(d) for d in digests]).hex()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8
