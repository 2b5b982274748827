"""The llama.cpp backend: ``gguf:PATH`` (a GGUF file) and ``gguf:embedded`` (SmolLM2-135M-Instruct).

Owns: loading a GGUF file with llama-cpp-python (the ``llama`` extra, imported only when a model
is loaded), rendering chats with the chat template stored in the file, generating one request at a
time and scoring candidate continuations from the model's logits.
Must not know: constitutions, prompt templates, caches or any workflow.

One sequence at a time. A llama.cpp context serves one sequence, so ``generate`` and ``score``
run their requests in order, one after another. Consecutive requests that share a prompt prefix
(the same system prompt, the same critique conversation) do not pay for it twice: llama-cpp-python
keeps the previous tokens in its KV cache and evaluates only what differs, and ``score`` does the
same. Prompt evaluation is batched ``batch_size`` tokens at a time; decoding is one token a step.

Chat template. The template comes from the GGUF metadata (``tokenizer.chat_template``; plain
ChatML when the file has none) and is installed as the model's chat handler, so requests without a
prefill go through ``create_chat_completion`` and requests with one are rendered with the same
template (generation prompt included) plus the prefill text and continued with
``create_completion``: both paths see byte-identical prompts.

Sampling. ``temperature=0`` is greedy. Otherwise plain nucleus sampling: llama.cpp's own top-k
and min-p defaults are switched off so that ``SamplingParams`` means the same here as in the other
backends. ``repetition_penalty`` is llama.cpp's repeat penalty (the same formula as transformers')
over every token generated so far; unlike transformers it does not count the prompt's tokens.
Every request is sampled with ``params.seed``, so a request's text does not depend on what else
is in the batch.

Scoring. ``score`` evaluates the rendered prompt once per request and reads the next-token logits
of its last position from the context (``llama_get_logits_ith``); a candidate's first token is
scored from those, and each further token costs one more one-token decode on top of the cached
prompt. The alternatives, ``Llama(logits_all=True)`` and ``create_completion(echo=True,
logprobs=...)`` (which requires it), keep a vocabulary-sized row of logits for every evaluated
token, generate calls included: for SmolLM2 a 1,500-token prompt evaluated about a fifth slower
and took 0.45 GB more memory (the buffer grows to 0.8 GB at 4096 tokens), all to serve
candidates that are usually one token (``"A"``/``"B"``). Candidate tokens are found as in the
transformers backend: the prompt plus candidate is tokenised as one string and the tokens after
the prompt's own tokens are the candidate's; when a merge crosses the boundary the candidate is
tokenised on its own. An empty candidate scores 0.0. The scores equal a ``logits_all`` model's fed
the same tokens one at a time; fed the whole candidate in one batch, llama.cpp's batched kernels
round differently (up to about 0.1 nat a token for SmolLM2).

Failures. An exception while generating one request turns that request into
``finish_reason='error'`` with a one-line message naming its index; the others are unaffected.
Exceptions that mean this code is wrong (TypeError, AttributeError...) are raised. ``score`` has no
per-request error channel and raises ``BackendError`` naming the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cai.backends._common import BUGS, CHATML_TEMPLATE
from cai.backends._embedded import gguf_path
from cai.errors import BackendError, InputError, missing
from cai.records import Generation, GenerationRequest, Message, SamplingParams, ScoreRequest

__all__ = ["GGUFBackend", "resolve_gguf_spec"]

_FALLBACK_TEMPLATE = CHATML_TEMPLATE
_BUGS = BUGS


def resolve_gguf_spec(spec: str) -> Path:
    """The GGUF file that ``gguf:PATH`` or ``gguf:embedded`` names; InputError if there is none."""
    prefix, _, arg = spec.partition(":")
    if prefix != "gguf" or not arg:
        raise InputError(f"model spec {spec!r}: expected gguf:PATH (a .gguf file) or gguf:embedded")
    if arg == "embedded":
        return gguf_path()
    path = Path(arg).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such GGUF file (model spec {spec!r})")
    return path


class GGUFBackend:
    """A GGUF model run by llama.cpp on the CPU, one sequence at a time; see the module docstring.

    ``n_ctx`` is the context size in tokens (prompt plus generated text); ``batch_size`` the number
    of prompt tokens evaluated per llama.cpp batch. ``n_threads`` is the decoding threads; the
    default is llama-cpp-python's (half the CPUs: one per physical core where cores have two
    hardware threads), which leaves room for other work. The embedded model decodes about 75
    tokens/s on one thread of a 2-CPU machine and about 120 with ``n_threads=2`` while the machine
    is otherwise idle; but llama.cpp's threads wait for each other at every layer, so with every
    CPU in use one busy neighbouring process cut that to under 10. Prompt evaluation uses every CPU.
    """

    def __init__(
        self,
        spec: str,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        batch_size: int = 512,
    ) -> None:
        if n_ctx < 16 or batch_size < 1 or (n_threads is not None and n_threads < 1):
            raise InputError(
                f"{spec}: need n_ctx >= 16, batch_size >= 1 and n_threads >= 1 "
                f"(got {n_ctx}, {batch_size}, {n_threads})"
            )
        self.spec = spec
        self.path = resolve_gguf_spec(spec)
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise missing("llama-cpp-python", "llama") from None
        self._lib: Any = llama_cpp
        try:
            llm: Any = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=n_ctx,
                n_batch=batch_size,
                n_threads=n_threads,
                last_n_tokens_size=n_ctx,  # the repetition penalty sees every generated token
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise InputError(f"{self.path}: cannot load the GGUF file: {_line(str(exc))}") from None
        self._llm: Any = llm
        self.n_ctx = int(llm.n_ctx())
        self.n_threads = int(llm.n_threads)
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter: Any = Jinja2ChatFormatter(
            template=llm.metadata.get("tokenizer.chat_template") or _FALLBACK_TEMPLATE,
            eos_token=_token_text(llm, eos),
            bos_token=_token_text(llm, bos),
            stop_token_ids=[eos] if eos >= 0 else None,
        )
        # Both generate paths (with and without a prefill) must render the same prompt.
        llm.chat_handler = self._formatter.to_chat_handler()

    def __repr__(self) -> str:
        return f"GGUFBackend({self.spec!r})"

    # -- prompts ----------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], prefill: str = "") -> str:
        """The prompt text the model continues: chat template, generation prompt, prefill."""
        rendered = self._formatter(messages=_chat(messages))
        return str(rendered.prompt) + prefill

    def _tokens(self, text: str) -> list[int]:
        # The chat template already holds any BOS/special tokens the model expects.
        return list(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    # -- generation -------------------------------------------------------------------------

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        """Continue each chat, one request after another; results in request order."""
        llm = self._model()
        out = []
        for i, request in enumerate(requests):
            try:
                out.append(self._generate_one(llm, request, params))
            except _BUGS:
                raise
            except Exception as exc:
                message = f"request {i}: {type(exc).__name__}: {_line(str(exc)) or 'no detail'}"
                out.append(Generation(text="", finish_reason="error", error=message))
        return out

    def _generate_one(
        self, llm: Any, request: GenerationRequest, params: SamplingParams
    ) -> Generation:
        stop = [s for s in params.stop if s]
        sampling: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": 0,  # off: plain nucleus sampling, as in the other backends
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": params.repetition_penalty,
            # 0xFFFFFFFF asks llama.cpp for a random seed; every other value is kept as is.
            "seed": params.seed % 0xFFFFFFFF,
        }
        if not request.prefill:
            response = llm.create_chat_completion(
                messages=_chat(request.messages), stop=stop, **sampling
            )
            choice = response["choices"][0]
            text = choice["message"]["content"] or ""
        else:
            rendered = self._formatter(messages=_chat(request.messages))
            prompt = self._tokens(str(rendered.prompt) + request.prefill)
            response = llm.create_completion(
                prompt=prompt,
                stop=stop + list(rendered.stop or []),
                stopping_criteria=rendered.stopping_criteria,
                **sampling,
            )
            choice = response["choices"][0]
            text = choice["text"] or ""
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        cuts = [text.find(s) for s in stop if s in text]  # llama.cpp cuts them; keep the promise
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        usage = response.get("usage") or {}
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    # -- scoring ----------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Summed log-probability of each candidate after the rendered chat and prefill."""
        self._model()
        out = []
        for i, request in enumerate(requests):
            try:
                out.append(self._score_one(request))
            except _BUGS:
                raise
            except Exception as exc:
                raise BackendError(
                    f"{self.spec}: score request {i}: {type(exc).__name__}: {_line(str(exc))}"
                ) from exc
        return out

    def _score_one(self, request: ScoreRequest) -> list[float]:
        prompt = self.render(request.messages, request.prefill)
        prompt_ids = self._tokens(prompt)
        if not prompt_ids:
            raise BackendError("the rendered prompt is empty")
        candidates = [self._candidate_ids(prompt, prompt_ids, c) for c in request.candidates]
        longest = max((len(c) for c in candidates), default=0)
        if len(prompt_ids) + longest > self.n_ctx:
            raise BackendError(
                f"{len(prompt_ids)} prompt tokens plus a {longest}-token candidate do not fit "
                f"the context of {self.n_ctx} tokens"
            )
        after_prompt = self._logprobs_after(prompt_ids)  # [V]
        scores = []
        for ids in candidates:
            total = float(after_prompt[ids[0]]) if ids else 0.0
            for j in range(1, len(ids)):  # one more one-token decode per further token
                total += float(self._logprobs_after(prompt_ids + ids[:j])[ids[j]])
            scores.append(total)
        return scores

    def _candidate_ids(self, prompt: str, prompt_ids: list[int], candidate: str) -> list[int]:
        if not candidate:
            return []
        full = self._tokens(prompt + candidate)
        if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
            return full[len(prompt_ids) :]
        return self._tokens(candidate)

    def _logprobs_after(self, tokens: list[int]) -> Any:
        """Next-token log-probabilities [V] after ``tokens``, reusing the cached common prefix."""
        llm, lib = self._llm, self._lib
        cached = np.asarray(llm.input_ids[: llm.n_tokens])
        n = min(len(cached), len(tokens))
        differs = np.flatnonzero(cached[:n] != np.asarray(tokens[:n], dtype=cached.dtype))
        keep = int(differs[0]) if differs.size else n
        keep = min(keep, len(tokens) - 1)  # the last token is decoded again for its logits
        memory = lib.llama_get_memory(llm.ctx)
        if keep > 0 and not lib.llama_memory_seq_rm(memory, 0, keep, -1):
            keep = 0  # a recurrent model cannot drop a suffix: start over
        if keep == 0:
            llm.reset()
        else:
            llm.n_tokens = keep
        llm.eval(tokens[keep:])
        pointer = lib.llama_get_logits_ith(llm.ctx, -1)
        if not pointer:
            raise BackendError("llama.cpp returned no logits")
        logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float64)
        shifted = logits - logits.max()
        return shifted - np.log(np.exp(shifted).sum())

    # -- lifecycle --------------------------------------------------------------------------

    def _model(self) -> Any:
        if self._llm is None:
            raise BackendError(f"{self.spec}: the backend is closed")
        return self._llm

    def close(self) -> None:
        """Free the model and its context."""
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def _chat(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _token_text(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llm.detokenize([token], special=True)).decode("utf-8", errors="replace")


def _line(text: str, limit: int = 200) -> str:
    """One line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
