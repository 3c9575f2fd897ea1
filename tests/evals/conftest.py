"""Fixtures for the evaluation tests: a real character-level model and a network tripwire."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

VOCAB = "0123456789+=\n"
STOI = {c: i for i, c in enumerate(VOCAB)}


def encode(text: str) -> list[int]:
    return [STOI[c] for c in text]


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


@dataclass
class CharModel:
    """A trained character GRU for "a+b=" -> "c\\n", and a reference greedy decoder."""

    module: Any
    encode: Callable[[str], list[int]] = encode
    decode: Callable[[list[int]], str] = decode
    train_pairs: set[tuple[int, int]] = field(default_factory=set)

    def greedy(self, prompt: str, max_new_tokens: int = 3) -> str:
        """Independent reference decoding: argmax token by token until a newline."""
        import torch

        was_training = self.module.training
        self.module.eval()
        ids = encode(prompt)
        out: list[int] = []
        try:
            with torch.no_grad():
                for _ in range(max_new_tokens):
                    logits = self.module(torch.tensor([ids + out]))
                    nxt = int(logits[0, -1].argmax())
                    out.append(nxt)
                    if VOCAB[nxt] == "\n":
                        break
        finally:
            self.module.train(was_training)
        text = decode(out)
        return text.split("\n", 1)[0]


def _build_and_train(seed: int = 0, steps: int = 120) -> CharModel:
    import torch
    from torch import nn

    class CharGRU(nn.Module):
        def __init__(self, vocab: int) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab, 32)
            self.gru = nn.GRU(32, 96, batch_first=True)
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(96, vocab)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h, _ = self.gru(self.emb(ids))
            return self.head(self.drop(h))

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pairs = [(a, b) for a in range(10) for b in range(10)]
    order = torch.randperm(len(pairs), generator=gen).tolist()
    # Hold out a fifth of the sums so the model gets some answers right and some wrong.
    train = [pairs[i] for i in order[:80]]
    texts = [f"{a}+{b}={a + b}\n" for a, b in train]
    width = max(len(t) for t in texts)
    x = torch.full((len(texts), width - 1), STOI["\n"])
    y = torch.full((len(texts), width - 1), -100)
    for r, t in enumerate(texts):
        ids = encode(t)
        x[r, : len(ids) - 1] = torch.tensor(ids[:-1])
        answer_from = t.index("=")  # predict only the answer and its newline
        for p in range(answer_from, len(ids) - 1):
            y[r, p] = ids[p + 1]
    model = CharGRU(len(VOCAB))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is much faster on a shared machine
    try:
        for _ in range(steps):
            logits = model(x)
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(VOCAB)), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return CharModel(module=model, train_pairs=set(train))


@pytest.fixture(scope="session")
def char_model() -> CharModel:
    """Trained once per session (a couple of seconds on one CPU core)."""
    return _build_and_train()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run several times faster on one thread."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Fail any attempt to reach the network (DNS or an IP socket), even if it is swallowed.

    Unix sockets stay allowed; nothing in these tests may look anything up or connect out
    (e.g. a tokenizer or model download).
    """
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(("connect", address))
            raise OSError(f"network access attempted in a test: connect({address!r})")
        return real_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(("connect_ex", address))
            raise OSError(f"network access attempted in a test: connect_ex({address!r})")
        return real_connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            attempts.append(("getaddrinfo", host))
            raise OSError(f"network access attempted in a test: getaddrinfo({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    # No ambient model or log directory may leak into an evaluation.
    monkeypatch.delenv("INSPECT_EVAL_MODEL", raising=False)
    monkeypatch.setenv("INSPECT_LOG_DIR", os.devnull + "-unused")
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"
