"""An Inspect AI model provider that generates with a torch module held in this process.

Importing this module imports ``inspect_ai`` and ``torch`` and registers the provider
``scalegate`` with Inspect's model API registry, so
``get_model("scalegate/<name>", memoize=False, module=..., encode=..., decode=...)``
returns a model that answers with the *current* weights of ``module`` (no copy is
made). ``scalegate.evals`` imports it only when an Inspect evaluation runs.

Pitfalls this provider handles for you: Inspect's default token counting loads a
tiktoken encoding (a network download), so token counts here come from ``encode``;
``get_model`` memoizes models by a JSON rendering of their arguments in which a torch
module renders as ``null`` — two different modules would share one cached model — so
always pass ``memoize=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from inspect_ai.model import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from scalegate.errors import EvaluationError
from scalegate.evals._isolation import preserved_mode

PROVIDER = "scalegate"

Encode = Callable[[str], Sequence[int]]
Decode = Callable[[Sequence[int]], str]
GenerateFn = Callable[[torch.nn.Module, list[int], int], Sequence[int]]
FormatPrompt = Callable[[list[ChatMessage]], str]


def default_format_prompt(messages: list[ChatMessage]) -> str:
    """The prompt text: the messages' texts joined by newlines (one user message: its text)."""
    return "\n".join(m.text for m in messages)


def _last_logits(out: Any) -> torch.Tensor:
    """Next-token logits (vocab,) from a module's output: (B,T,V) or (B,V) tensor, a tuple
    whose first item is one, or an object with ``.logits``."""
    if isinstance(out, tuple | list) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor) and hasattr(out, "logits"):
        out = out.logits
    if isinstance(out, torch.Tensor) and out.dim() == 3:
        return out[0, -1]
    if isinstance(out, torch.Tensor) and out.dim() == 2:
        return out[0]
    raise EvaluationError(
        f"cannot read next-token logits from the module's output ({type(out).__name__}"
        f"{'' if not isinstance(out, torch.Tensor) else f' of shape {tuple(out.shape)}'}).",
        hint="The module must map (1, T) token ids to (1, T, vocab) logits; otherwise "
        "pass generate_fn(module, prompt_ids, max_new_tokens) -> new token ids.",
    )


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TorchModelAPI(ModelAPI):
    """Inspect ``ModelAPI`` over a ``torch.nn.Module`` plus ``encode``/``decode`` functions.

    Generation is greedy under ``torch.no_grad()`` with the module in eval mode (its
    modes are restored after each call), unless ``GenerateConfig.temperature`` > 0, in
    which case tokens are sampled from a private ``torch.Generator`` seeded from
    ``GenerateConfig.seed`` (global RNG streams are not touched). ``generate_fn``, if
    given, replaces the decoding loop and returns only the new token ids. Output stops
    at ``max_new_tokens`` (or ``GenerateConfig.max_tokens``) or at the first stop
    sequence (``stop_seqs`` plus ``GenerateConfig.stop_seqs``), which is cut off.
    ``context_length`` crops the prompt to its last tokens. Token usage is reported from
    ``encode`` lengths. Tools are not offered to the module.
    """

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),
        *,
        module: torch.nn.Module | None = None,
        encode: Encode | None = None,
        decode: Decode | None = None,
        max_new_tokens: int = 32,
        generate_fn: GenerateFn | None = None,
        stop_seqs: Sequence[str] = (),
        context_length: int | None = None,
        format_prompt: FormatPrompt | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, [], config)
        if not isinstance(module, torch.nn.Module):
            raise EvaluationError(
                f"model {PROVIDER}/{model_name} needs module=<torch.nn.Module>, "
                f"got {type(module).__name__}.",
                hint="Use scalegate.evals.local_torch_model(module, encode, decode).",
            )
        if not callable(encode) or not callable(decode):
            raise EvaluationError(
                f"model {PROVIDER}/{model_name} needs encode(str) -> list[int] and "
                "decode(list[int]) -> str functions."
            )
        if max_new_tokens < 1:
            raise EvaluationError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
        if model_args:
            raise EvaluationError(
                f"model {PROVIDER}/{model_name}: unknown model arguments {sorted(model_args)}."
            )
        self.module = module
        self.encode = encode
        self.decode = decode
        self.max_new_tokens = max_new_tokens
        self.generate_fn = generate_fn
        self.stop_seqs = tuple(stop_seqs)
        self.context_length = context_length
        self.format_prompt = format_prompt or default_format_prompt

    # Token counts come from the model's own tokenizer: the default loads tiktoken's
    # o200k_base, which downloads it from the network on first use.
    async def count_text_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def max_tokens(self) -> int | None:
        return self.max_new_tokens

    def max_connections(self) -> int:
        # Generation runs synchronously on this process's CPU/GPU; concurrency buys nothing.
        return 1

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        prompt = self.format_prompt(input)
        prompt_ids = [int(t) for t in self.encode(prompt)]
        if not prompt_ids:
            raise EvaluationError(f"encode() returned no tokens for the prompt {prompt!r}.")
        max_new = config.max_tokens or self.max_new_tokens
        stops = self.stop_seqs + tuple(config.stop_seqs or ())
        with torch.no_grad(), preserved_mode(self.module, training=False):
            if self.generate_fn is not None:
                new_ids = [int(t) for t in self.generate_fn(self.module, prompt_ids, max_new)]
                new_ids = new_ids[:max_new]
            else:
                new_ids = self._decode_loop(prompt_ids, max_new, stops, config)
        text, stopped = _cut_at_stop(self.decode(new_ids), stops)
        output = ModelOutput.from_content(
            model=self.model_name,
            content=text,
            stop_reason="stop" if stopped or len(new_ids) < max_new else "max_tokens",
        )
        output.usage = ModelUsage(
            input_tokens=len(prompt_ids),
            output_tokens=len(new_ids),
            total_tokens=len(prompt_ids) + len(new_ids),
        )
        return output

    def _decode_loop(
        self, prompt_ids: list[int], max_new: int, stops: Sequence[str], config: GenerateConfig
    ) -> list[int]:
        temperature = config.temperature or 0.0
        generator: torch.Generator | None = None
        if temperature > 0:
            generator = torch.Generator()
            if config.seed is not None:
                generator.manual_seed(config.seed)
            else:
                generator.seed()
        param = next(self.module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        seq = list(prompt_ids)
        new_ids: list[int] = []
        for _ in range(max_new):
            window = seq[-self.context_length :] if self.context_length else seq
            logits = _last_logits(self.module(torch.tensor([window], device=device)))
            if generator is None:
                nxt = int(torch.argmax(logits).item())
            else:
                probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=generator).item())
            seq.append(nxt)
            new_ids.append(nxt)
            if stops and _cut_at_stop(self.decode(new_ids), stops)[1]:
                break
        return new_ids


# Register under the provider name "scalegate" (Inspect also records the package
# namespace, "scalegate/scalegate"; get_model matches the unqualified name). The class
# itself stays undecorated: @modelapi returns a factory function, not the class.
modelapi(PROVIDER)(TorchModelAPI)
