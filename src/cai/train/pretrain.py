"""Constitutional pre-training: continued language-model training on segments tagged with control
tokens (conditional training), so generation can be conditioned on ``<|ok|>``.

Owns: ``CaiPretrainConfig`` (TRL's ``SFTConfig`` with the control tokens, the top-layer option
and CPU-friendly defaults), ``train_pretrain``, adding the control tokens to the tokenizer
(special tokens, so a decoded reply never shows one), resizing and initialising their
embeddings, rendering each segment, and writing ``control.json`` beside the weights.
Must not know: how a segment's token was chosen, or how the model is used afterwards.

A segment with a request is the chat ``user: PROMPT / assistant: TOKEN TEXT`` rendered with the
tokenizer's chat template; prose is ``TOKEN TEXT`` and the end-of-text token. The loss covers
every token (this is pre-training, not instruction tuning) except the control token itself:
the model learns to condition on it, never to write it. (Unmasked, with embeddings frozen and
tied, a new token and the word pieces it starts from get the same logit, and a first embedded
run taught the model to begin replies with the text " ok".) The token opens the assistant turn
because that is where the backend puts it when it conditions a request (``control.json``,
``cai.backends._control``): the trained model is the spec ``run:OUT_DIR`` (conditioned on
``<|ok|>``), ``run:OUT_DIR+cond:none`` the same weights unconditioned.

New token embeddings start as the mean embedding of their name's word pieces (``<|ok|>`` from
" ok", ``<|violates:harm.weapons|>`` from " violates harm weapons"), not from noise around the
mean: distinct from the start, which matters with few steps and with ``train_layers``, where
the embeddings stay frozen and only the top decoder layers and the final norm train (the
backward pass then stops at the lowest of them, as with ``lora_layers``). The result is always a
full model directory (a LoRA adapter cannot carry a resized vocabulary on its base).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends import CONTROL_FILE, OK_TOKEN, ControlFile, is_control_token
from cai.errors import InputError, missing
from cai.train._common import (
    COMMON_KEYS,
    LoraFields,
    TrainResult,
    check_out_dir,
    cpu_unless_accelerated,
    load_for_training,
    prepare_args,
    staging,
    summary,
    train_and_save,
)
from cai.train._corpus import PretrainSegment, read_segments

try:
    from datasets import Dataset
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer
except ImportError as exc:
    raise missing(exc.name or "trl", "train") from None

__all__ = [
    "CaiPretrainConfig",
    "add_control_tokens",
    "segment_rows",
    "segment_text",
    "train_pretrain",
]


@dataclass
class CaiPretrainConfig(SFTConfig, LoraFields):
    """TRL's ``SFTConfig`` for continued pre-training with control tokens.

    Changed defaults: full fine-tune (``lora=False``; True is refused), ``learning_rate`` 5e-5,
    ``max_length`` 256, batch size 4, one epoch, no activation checkpointing, no checkpoints
    (``save_strategy='no'``). ``output_dir`` is ignored: the model goes to ``out_dir``.
    """

    control_tokens: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Control tokens to add besides those the corpus uses (e.g. one per principle "
            "of the constitution, so any can condition generation later)."
        },
    )
    condition: str = field(
        default=OK_TOKEN,
        metadata={"help": "The token generation is conditioned on by default (control.json)."},
    )
    train_layers: int | None = field(
        default=None,
        metadata={
            "help": "Train only the top N decoder layers and the final norm, embeddings frozen "
            "(None: every weight)."
        },
    )
    lora: bool = False
    learning_rate: float = 5e-5
    max_length: int | None = 256
    per_device_train_batch_size: int = 4
    num_train_epochs: float = 1.0
    # TRL turns the deprecated alias on; None lets activation_checkpointing (default off) decide.
    gradient_checkpointing: bool = None  # type: ignore[assignment]
    save_strategy: str = "no"

    def __post_init__(self) -> None:
        if self.lora:
            raise InputError(
                "pretrain is a full fine-tune (lora=False): a LoRA adapter cannot carry the "
                "resized embeddings of the new control tokens"
            )
        if self.train_layers is not None and self.train_layers < 1:
            raise InputError(f"train_layers must be at least 1, got {self.train_layers}")
        bad = [t for t in [self.condition, *self.control_tokens] if not is_control_token(t)]
        if bad:
            raise InputError(
                f"not a control token: {bad[0]!r} (expected <|ok|> or <|violates:ID|>)"
            )
        cpu_unless_accelerated(self)
        super().__post_init__()  # type: ignore[no-untyped-call]


def _token_words(token: str) -> str:
    """The words a new token's embedding starts from: ``<|violates:a.b|>``: " violates a b"."""
    return " " + re.sub(r"[:._\-]+", " ", token[2:-2]).strip()


def add_control_tokens(model: Any, tokenizer: Any, tokens: Sequence[str]) -> list[str]:
    """Add ``tokens`` to the tokenizer as special tokens, resize the model's embeddings and set
    each new row to the mean embedding of its name's word pieces. Returns the tokens added
    (those the tokenizer already had are left as they are)."""
    import torch
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    new = [t for t in dict.fromkeys(tokens) if t not in vocab]
    if not new:
        return []
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in new], special_tokens=True
    )
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb_in = model.get_input_embeddings().weight
    emb_out = model.get_output_embeddings()
    tied = emb_out is None or emb_out.weight is emb_in
    with torch.no_grad():
        for token in new:
            tid = tokenizer.convert_tokens_to_ids(token)
            pieces = tokenizer(_token_words(token), add_special_tokens=False)["input_ids"]
            emb_in[tid] = emb_in[pieces].mean(0)
            if not tied:
                emb_out.weight[tid] = emb_out.weight[pieces].mean(0)
    return new


def _freeze_below(model: Any, n: int) -> None:
    """Only the top ``n`` decoder layers and the final norm keep gradients."""
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise InputError("train_layers needs a decoder with a 'layers' list (Llama-like)")
    model.requires_grad_(False)
    for layer in list(layers)[-n:]:
        layer.requires_grad_(True)
    norm = getattr(decoder, "norm", None)
    if norm is not None:
        norm.requires_grad_(True)


def segment_text(seg: PretrainSegment, tokenizer: Any) -> str:
    """The training text of a segment (see the module docstring)."""
    if seg.prompt is None:
        return f"{seg.control}{seg.text}{tokenizer.eos_token or ''}"
    chat = [
        {"role": "user", "content": seg.prompt},
        {"role": "assistant", "content": f"{seg.control}{seg.text}"},
    ]
    return str(tokenizer.apply_chat_template(chat, tokenize=False))


def segment_rows(
    segments: Sequence[PretrainSegment], tokenizer: Any, max_length: int | None
) -> list[dict[str, list[int]]]:
    """Tokenised segments; ``completion_mask`` is 0 at control tokens only (see the module
    docstring: the model conditions on them, it is never taught to write one)."""
    control = {tokenizer.convert_tokens_to_ids(s.control) for s in segments}
    rows = []
    for seg in segments:
        ids = list(tokenizer(segment_text(seg, tokenizer), add_special_tokens=False)["input_ids"])
        ids = ids[:max_length] if max_length else ids
        rows.append({"input_ids": ids, "completion_mask": [int(t not in control) for t in ids]})
    return rows


def train_pretrain(
    base_model: str,
    corpus_files: Sequence[Path],
    out_dir: Path,
    config: CaiPretrainConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> TrainResult:
    """Continue pre-training ``base_model`` (a model spec) on tagged segments.

    Saves the full model, the tokenizer with its control tokens, ``control.json`` and
    ``train_meta.json`` to ``out_dir``; load it back as ``run:OUT_DIR``. Raises InputError for
    a bad file (naming file:line), an unusable spec, an empty corpus or an ``out_dir`` holding
    something else.
    """
    config = config or CaiPretrainConfig()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)  # before anything slow
    segments, files = read_segments(corpus_files)
    if not segments:
        raise InputError("no pre-training segments: the corpus files are empty")
    used = sorted({s.control for s in segments}, key=lambda t: (t != OK_TOKEN, t))
    tokens = list(dict.fromkeys([config.condition, *used, *config.control_tokens]))
    loaded = load_for_training(base_model, config, "causal", cache_dir)
    added = add_control_tokens(loaded.model, loaded.tokenizer, tokens)
    if config.train_layers is not None:
        _freeze_below(loaded.model, config.train_layers)
    with staging(out_dir) as tmp:
        args = prepare_args(config, tmp)
        args.completion_only_loss = True  # the mask: every token but the control tokens
        rows = segment_rows(segments, loaded.tokenizer, config.max_length)
        trainer = SFTTrainer(
            model=loaded.model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=loaded.tokenizer,
        )
        result = train_and_save(
            trainer,
            loaded,
            method="pretrain",
            out_dir=out_dir,
            tmp=tmp,
            data=files,
            config=summary(args, (*COMMON_KEYS, "train_layers", "condition"))
            | {"control_tokens": tokens, "added_tokens": len(added)},
        )
        control = ControlFile(tokens=tokens, condition=config.condition)
        (tmp / CONTROL_FILE).write_text(
            json.dumps(control.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )
    return result
