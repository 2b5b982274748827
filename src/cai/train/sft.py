"""Supervised fine-tuning on SL-CAI revisions mixed with helpfulness data (TRL ``SFTTrainer``).

Owns: ``CaiSFTConfig`` (TRL's ``SFTConfig`` plus LoRA options and the helpfulness ratio, with
CPU-friendly defaults) and ``train_sft``.
Must not know: how the revisions or helpfulness answers were produced, or any other method.

The mix: every revision example plus ``round(helpful_ratio * n_revisions)`` helpfulness examples
drawn without replacement by a seeded shuffle (``seed``), so the model keeps answering ordinary
requests instead of learning that every answer is a careful rewrite. Each example becomes a TRL
conversational prompt-completion row, so the loss covers the final assistant turn only.

Scaling out is TRL's and accelerate's business: ``deepspeed=`` (a ZeRO config file or dict),
``accelerator_config``, ``fsdp``, ``bf16`` and ``report_to`` are ordinary ``TrainingArguments``
fields and pass straight through; launch with ``accelerate launch`` for several devices. On a
machine without a GPU the config sets ``use_cpu`` itself (transformers needs it for bf16 on CPU);
``use_cpu=True`` forces CPU on a GPU machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.errors import InputError, missing
from cai.records import SFTExample
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
from cai.train._data import chat_dicts, mix_sft, read_sft, sft_rows

try:
    from datasets import Dataset
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer
except ImportError as exc:
    raise missing(exc.name or "trl", "train") from None

__all__ = ["CaiSFTConfig", "train_sft"]


@dataclass
class CaiSFTConfig(SFTConfig, LoraFields):
    """TRL's ``SFTConfig`` with LoRA options, the helpfulness mix and CPU-friendly defaults.

    Changed defaults: ``learning_rate`` 2e-4 (a LoRA rate: use about 2e-5 with ``lora=False``),
    ``max_length`` 256, batch size 4, one epoch, no activation checkpointing, no checkpoints
    (``save_strategy='no'``). bf16 mixed precision stays on (TRL's default), on CPU too:
    ``use_cpu`` is set when there is no GPU. ``output_dir`` is ignored: the model goes to
    ``train_sft``'s ``out_dir``.
    """

    helpful_ratio: float = field(
        default=1.0,
        metadata={"help": "Helpfulness examples mixed in per SL-CAI revision example."},
    )
    all_assistant_turns: bool = field(
        default=False,
        metadata={
            "help": "Train on every assistant turn of each example (a critique and its revision "
            "in one chat), not the last one only; the chat is tokenised once."
        },
    )
    learning_rate: float = 2e-4
    max_length: int | None = 256
    per_device_train_batch_size: int = 4
    num_train_epochs: float = 1.0
    # TRL turns the deprecated alias on; None lets activation_checkpointing (default off) decide.
    gradient_checkpointing: bool = None  # type: ignore[assignment]
    save_strategy: str = "no"

    def __post_init__(self) -> None:
        cpu_unless_accelerated(self)
        super().__post_init__()  # type: ignore[no-untyped-call]


def train_sft(
    base_model: str,
    sft_files: Sequence[Path],
    helpful_files: Sequence[Path],
    out_dir: Path,
    config: CaiSFTConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> TrainResult:
    """Fine-tune ``base_model`` (a model spec) on the revisions plus helpfulness data.

    Saves the adapter (or full model) and tokenizer plus ``train_meta.json`` to ``out_dir``;
    load it back as ``run:OUT_DIR``. Raises InputError for a bad file (naming file:line), an
    unusable spec, an empty training set or an ``out_dir`` holding something else.
    """
    config = config or CaiSFTConfig()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)  # before anything slow
    revisions, files = read_sft(sft_files)
    helpful, helpful_data = read_sft(helpful_files)
    mix = mix_sft(revisions, helpful, config.helpful_ratio, config.seed)
    if not mix.examples:
        raise InputError("no SFT examples: the SL-CAI files are empty")
    loaded = load_for_training(base_model, config, "causal", cache_dir)
    with staging(out_dir) as tmp:
        args = prepare_args(config, tmp)
        if config.all_assistant_turns:
            rows = assistant_turn_rows(mix.examples, loaded.tokenizer, config.max_length)
            args.completion_only_loss = True  # the mask below, not TRL's prompt/completion split
        else:
            rows = sft_rows(mix.examples)
        trainer = SFTTrainer(
            model=loaded.model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=loaded.tokenizer,
            peft_config=loaded.peft_config,
        )
        return train_and_save(
            trainer,
            loaded,
            method="sft",
            out_dir=out_dir,
            tmp=tmp,
            data=files + helpful_data,
            config=summary(args, (*COMMON_KEYS, "helpful_ratio", "all_assistant_turns")),
            n_helpful=mix.n_helpful,
        )


def assistant_turn_rows(
    examples: Sequence[SFTExample], tokenizer: Any, max_length: int | None
) -> list[dict[str, list[int]]]:
    """Tokenised rows whose ``completion_mask`` covers every assistant turn (content and its
    end-of-turn marker). Each turn's span is found by rendering the chat up to it, which needs
    a prefix-preserving chat template (ChatML and SmolLM2's are); one that is not is an error."""
    rows = []
    for ex in examples:
        chat = chat_dicts(ex.messages)
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        spans = []
        for i, message in enumerate(chat):
            if message["role"] != "assistant":
                continue
            before = tokenizer.apply_chat_template(
                chat[:i], tokenize=False, add_generation_prompt=True
            )
            upto = tokenizer.apply_chat_template(chat[: i + 1], tokenize=False)
            if not (text.startswith(upto) and upto.startswith(before)):
                raise InputError(
                    f"example {ex.id}: the chat template is not prefix-preserving, so assistant "
                    "turns cannot be masked; train on the last turn only"
                )
            spans.append((len(before), len(upto)))
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        mask = [int(any(a <= start < b for a, b in spans)) for start, _ in enc["offset_mapping"]]
        ids = list(enc["input_ids"])
        if max_length is not None:
            ids, mask = ids[:max_length], mask[:max_length]
        rows.append({"input_ids": ids, "completion_mask": mask})
    return rows
