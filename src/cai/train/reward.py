"""A preference (reward) model trained on AI-feedback preferences (TRL ``RewardTrainer``).

Owns: ``CaiRewardConfig`` (TRL's ``RewardConfig`` plus LoRA options and the margin scale, with
CPU-friendly defaults), ``train_reward`` and ``load_reward_model``.
Must not know: how the preferences were labelled, or any other method.

The model is the base causal LM with a one-output score head
(``AutoModelForSequenceClassification``, ``num_labels=1``). TRL's loss is
``-log sigmoid(r_chosen - r_rejected - margin)``; the ``margin`` column is each record's
order-averaged log-probability margin from the feedback model times ``margin_scale`` (0 drops
the column): a pair the feedback model separated widely must be
separated widely by the reward model too. TRL drops pairs longer than ``max_length``.

With LoRA the score head is trained in full beside the adapter (PEFT's ``SEQ_CLS`` task saves it
with the adapter). A base that is itself an adapter is merged first, and the result is then saved
as a full model, since its base exists on no disk. A reward model is not a chat model: load it
with ``load_reward_model``, not as a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends import resolve_spec
from cai.errors import InputError, missing
from cai.train._common import (
    COMMON_KEYS,
    LoraFields,
    TrainResult,
    check_out_dir,
    cpu_unless_accelerated,
    load_for_training,
    prepare_args,
    read_result,
    staging,
    summary,
    train_and_save,
)
from cai.train._data import preference_rows, read_preferences

try:
    from datasets import Dataset
    from trl.trainer.reward_config import RewardConfig
    from trl.trainer.reward_trainer import RewardTrainer
except ImportError as exc:
    raise missing(exc.name or "trl", "train") from None

__all__ = ["CaiRewardConfig", "load_reward_model", "train_reward"]


@dataclass
class CaiRewardConfig(RewardConfig, LoraFields):
    """TRL's ``RewardConfig`` with LoRA options, the margin scale and CPU-friendly defaults.

    Changed defaults: ``learning_rate`` 1e-4 (a LoRA rate: use about 1e-5 with ``lora=False``),
    ``max_length`` 256, batch size 4, one epoch, no activation checkpointing, no checkpoints
    (``save_strategy='no'``). bf16 mixed precision stays on (TRL's default), on CPU too:
    ``use_cpu`` is set when there is no GPU. ``output_dir`` is ignored: the model goes to
    ``train_reward``'s ``out_dir``.
    """

    margin_scale: float = field(
        default=1.0,
        metadata={"help": "Multiplier on each record's margin (TRL's margin column); 0 drops it."},
    )
    learning_rate: float = 1e-4
    max_length: int | None = 256
    per_device_train_batch_size: int = 4
    num_train_epochs: float = 1.0
    # TRL turns the deprecated alias on; None lets activation_checkpointing (default off) decide.
    gradient_checkpointing: bool = None  # type: ignore[assignment]
    save_strategy: str = "no"

    def __post_init__(self) -> None:
        cpu_unless_accelerated(self)
        super().__post_init__()  # type: ignore[no-untyped-call]


def train_reward(
    base_model: str,
    preference_files: Sequence[Path],
    out_dir: Path,
    config: CaiRewardConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> TrainResult:
    """Train a reward model from ``base_model`` (a model spec) on preference files.

    Saves it with its tokenizer and ``train_meta.json`` to ``out_dir``; load it with
    ``load_reward_model``. Raises InputError for a bad file (naming file:line), an unusable spec
    or an empty training set.
    """
    config = config or CaiRewardConfig()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)  # before anything slow
    records, files = read_preferences(preference_files)
    if not records:
        raise InputError("no preference pairs: the files are empty")
    loaded = load_for_training(base_model, config, "reward", cache_dir)
    with staging(out_dir) as tmp:
        args = prepare_args(config, tmp)
        rows = preference_rows(records, margin_scale=config.margin_scale)
        trainer = RewardTrainer(
            model=loaded.model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=loaded.tokenizer,
            peft_config=loaded.peft_config,
        )
        prepared: Any = trainer.train_dataset  # a map-style Dataset: we built it from a list
        if len(prepared) == 0:
            raise InputError(f"every preference pair is longer than max_length={args.max_length}")
        settings = summary(args, (*COMMON_KEYS, "margin_scale", "center_rewards_coefficient"))
        return train_and_save(
            trainer,
            loaded,
            method="reward",
            out_dir=out_dir,
            tmp=tmp,
            data=files,
            config=settings,
            # The merged base of an adapter base exists only in memory: save the whole model.
            merge=loaded.source.adapter is not None,
        )


def load_reward_model(path: str | Path, *, device: str = "cpu") -> tuple[Any, Any]:
    """Load a reward model saved by ``train_reward``: ``(model, tokenizer)``, in eval mode.

    ``model(**tokenizer(texts, ...)).logits[:, 0]`` is the reward of each text.
    """
    try:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError as exc:
        raise missing(exc.name or "torch", "train") from None
    path = Path(path)
    result = read_result(path)
    if result.method != "reward":
        raise InputError(f"{path}: a {result.method} model, not a reward model")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if result.saved == "adapter":
        from peft import PeftModel

        src = resolve_spec(f"run:{path}")  # the adapter's base, as the backends find it
        base = AutoModelForSequenceClassification.from_pretrained(
            src.model, revision=src.revision, dtype=torch.float32, num_labels=1
        )
        model: Any = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer
