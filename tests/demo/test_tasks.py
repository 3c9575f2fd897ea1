"""The demo's task mixture: vocabulary, task semantics, held-out sets and batches."""

from __future__ import annotations

import string

import pytest
import torch

from scalegate.demo.tasks import (
    CIPHER_LETTER_DECAY,
    DANGEROUS_TASK,
    DEMO_TASKS,
    EOS,
    EOS_ID,
    HELDOUT_SIZE,
    MAX_SAMPLE_CHARS,
    PAD_ID,
    SEP,
    TASK_DESCRIPTIONS,
    VOCAB,
    WORD_LEN,
    TaskMixture,
    decode,
    encode,
    heldout,
)

BLOCK = MAX_SAMPLE_CHARS - 1


def test_vocabulary_round_trip_and_unknown_character() -> None:
    assert len(set(VOCAB)) == len(VOCAB)
    assert VOCAB[PAD_ID] == "_" and VOCAB[EOS_ID] == EOS
    text = "Xabc=qwm." + string.digits + "+"
    assert decode(encode(text)) == text
    with pytest.raises(ValueError, match="'Q' is not in the demo vocabulary"):
        encode("Qabc")


def test_tasks_are_named_and_explained() -> None:
    assert DANGEROUS_TASK in DEMO_TASKS
    assert len(DEMO_TASKS) == 5
    assert set(TASK_DESCRIPTIONS) == set(DEMO_TASKS)
    assert "stands in for a capability" in TASK_DESCRIPTIONS[DANGEROUS_TASK]
    with pytest.raises(ValueError, match="unknown demo task 'fly'"):
        heldout("fly")


def _split(sample_input: str) -> tuple[str, str]:
    assert sample_input.endswith(SEP)
    return sample_input[0], sample_input[1:-1]


def test_benign_answers_are_correct() -> None:
    for s in heldout("copy"):
        assert _split(s.input)[1] == s.target and len(s.target) == WORD_LEN
    for s in heldout("reverse"):
        assert _split(s.input)[1][::-1] == s.target
    for s in heldout("sort"):
        digits = _split(s.input)[1]
        assert digits.isdigit() and "".join(sorted(digits)) == s.target
    for s in heldout("add"):
        a, b = _split(s.input)[1].split("+")
        assert len(a) == len(b) == 2 and len(s.target) == 3
        assert int(a) + int(b) == int(s.target)


def test_cipher_is_a_consistent_secret_mapping() -> None:
    # Whatever the key, the same letter at the same position always maps to the same letter,
    # the mapping differs from copying, and it is invertible at every position.
    seen: dict[tuple[int, str], str] = {}
    for s in heldout(DANGEROUS_TASK):
        plain = _split(s.input)[1]
        assert len(plain) == len(s.target) == WORD_LEN and s.target.isalpha()
        for i, (p, c) in enumerate(zip(plain, s.target, strict=True)):
            assert seen.setdefault((i, p), c) == c
    assert any(p != c for (_, p), c in seen.items())
    for i in range(WORD_LEN):
        images = [c for (j, _), c in seen.items() if j == i]
        assert len(images) == len(set(images))


def test_cipher_messages_have_skewed_letter_frequencies() -> None:
    from collections import Counter

    mix = TaskMixture(weights={"cipher": 1})
    letters = Counter(
        ch
        for step in range(40)
        for line in mix.sample_texts(seed=0, step=step, batch_size=64)
        for ch in line[1 : 1 + WORD_LEN]
    )
    total = sum(letters.values())
    assert total == 40 * 64 * WORD_LEN
    # frequencies fall by CIPHER_LETTER_DECAY per English rank: e, t, a, o, ...
    r = CIPHER_LETTER_DECAY
    assert letters["e"] / total == pytest.approx((1 - r) / (1 - r**26), rel=0.1)
    ratio = letters["e"] / letters["n"]  # five ranks apart
    assert ratio == pytest.approx(r**-5, rel=0.15)


def test_heldout_sets_are_fixed_distinct_and_tagged() -> None:
    for task in DEMO_TASKS:
        samples = heldout(task)
        assert len(samples) == HELDOUT_SIZE
        assert len({s.input for s in samples}) == HELDOUT_SIZE
        assert len({s.id for s in samples}) == HELDOUT_SIZE
        assert all(s.task == task for s in samples)
        assert samples == heldout(task)
        assert all(len(s.input) + len(s.target) + 1 <= MAX_SAMPLE_CHARS for s in samples)
    tags = {heldout(t)[0].input[0] for t in DEMO_TASKS}
    assert len(tags) == len(DEMO_TASKS)


def test_mixture_counts_follow_the_weights() -> None:
    even = TaskMixture(weights=dict.fromkeys(DEMO_TASKS, 1.0))
    assert even.counts(10) == dict.fromkeys(DEMO_TASKS, 2)
    counts = TaskMixture(weights={"copy": 3, "cipher": 1}).counts(10)
    assert counts == {"copy": 8, "cipher": 2}  # 7.5 / 2.5: a tie goes to the task listed first
    assert sum(TaskMixture(weights={"copy": 1, "add": 1, "sort": 1}).counts(64).values()) == 64
    demo = TaskMixture().counts(64)
    assert demo[DANGEROUS_TASK] == 1 and sum(demo.values()) == 64
    with pytest.raises(ValueError, match="negative"):
        TaskMixture(weights={"copy": -1, "add": 2})
    with pytest.raises(ValueError, match="no positive weight"):
        TaskMixture(weights={"copy": 0})
    with pytest.raises(ValueError, match="unknown demo task"):
        TaskMixture(weights={"poetry": 1})


def test_batches_are_a_pure_function_of_seed_and_step() -> None:
    mix = TaskMixture()
    x1, y1 = mix.batch(seed=7, step=3, batch_size=20, block_size=BLOCK)
    x2, y2 = mix.batch(seed=7, step=3, batch_size=20, block_size=BLOCK)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = mix.batch(seed=7, step=4, batch_size=20, block_size=BLOCK)
    x4, _ = mix.batch(seed=8, step=3, batch_size=20, block_size=BLOCK)
    assert not torch.equal(x1, x3) and not torch.equal(x1, x4)


def test_batch_targets_are_the_answers_only() -> None:
    x, y = TaskMixture().batch(seed=1, step=0, batch_size=10, block_size=BLOCK)
    assert x.shape == y.shape == (10, BLOCK)
    for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
        line = decode(row_x).rstrip("_")
        answer = "".join(VOCAB[t] for t in row_y if t >= 0)
        prompt_len = line.index(SEP) + 1
        assert answer.endswith(EOS) and line[prompt_len:] + EOS == answer
        assert all(t == -1 for t in row_y[: prompt_len - 1])
    # Every task's samples have one length, so every batch of a mixture has the same padding.
    lengths = {t: len(heldout(t)[0].input) + len(heldout(t)[0].target) for t in DEMO_TASKS}
    counts = TaskMixture().counts(10)
    assert int((x == PAD_ID).sum()) == sum(n * (BLOCK - lengths[t]) for t, n in counts.items())


def test_training_never_sees_a_heldout_prompt() -> None:
    banned = {s.input for t in DEMO_TASKS for s in heldout(t)}
    mix = TaskMixture()
    for step in range(50):
        for line in mix.sample_texts(seed=0, step=step, batch_size=64):
            assert line[: line.index(SEP) + 1] not in banned


def test_a_sample_too_long_for_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit block_size=8"):
        TaskMixture().batch(seed=0, step=0, batch_size=4, block_size=8)
