"""Direct preference optimisation on AI-feedback preferences (TRL ``DPOTrainer``).

Owns: ``CaiDPOConfig`` (TRL's ``DPOConfig`` plus LoRA options and the soft-label setting, with
CPU-friendly defaults) and ``train_dpo``.
Must not know: how the preferences were labelled, or any other method.

Soft labels. Each preference carries ``soft_label`` = P(chosen is better) from the feedback
model. Plain DPO treats every pair as certain and keeps widening the margin even when the
feedback model was close to a coin flip. With ``soft_labels=True`` (the default) the loss is
TRL's ``exo_pair`` with ``label_smoothing = eps = mean(1 - soft_label)`` over the training pairs
(clipped to [1e-3, 0.5]): it minimises KL(p_theta || [1 - eps, eps]) between the policy's
implied preference sigma(beta * margin) and the smoothed label, whose optimum is
sigma(beta * margin) = 1 - eps, so the policy is pulled to the feedback model's average
confidence and no further. Why this and not the alternatives, in TRL 1.16:
- its ``sigmoid`` loss no longer reads ``label_smoothing`` (conservative DPO is gone), and the
  ``robust`` loss is unbounded below for large margins (it corrects for label noise, it does
  not cap confidence);
- per-pair targets or weights would need a copy of ``DPOTrainer``'s loss code, which a thin
  layer over TRL should not carry. The mean is a corpus-level summary: ``min_soft_label`` drops
  the pairs the feedback model was least sure of before the mean is taken.
``soft_labels=False`` trains with ``loss_type``/``label_smoothing`` exactly as configured.

Reference model. With LoRA, TRL uses the base with the adapter disabled as the reference. When
the base is an SFT adapter (``run:DIR/models/sft``) that adapter is trained further and TRL keeps a
frozen copy of it as the reference, so the reference is the SFT policy. A full fine-tune gets an
explicit frozen copy of the (merged) starting model, never TRL's reload from the config path.

Scaling out: ``deepspeed=``, ``accelerator_config``, ``fsdp``, ``bf16``, ``report_to`` and
``precompute_ref_log_probs`` are ordinary config fields and pass straight through.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.errors import InputError, missing
from cai.records import PreferenceRecord
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
from cai.train._data import preference_rows, read_preferences

try:
    from datasets import Dataset
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer
except ImportError as exc:
    raise missing(exc.name or "trl", "train") from None

__all__ = ["CaiDPOConfig", "smoothing_from_soft_labels", "train_dpo"]

EPS_MIN = 1e-3
"""Smallest smoothing: EXO needs eps > 0 (its paper's value for hard labels)."""
EPS_MAX = 0.5
"""Largest smoothing: at 0.5 the pairs carry no preference at all."""


@dataclass
class CaiDPOConfig(DPOConfig, LoraFields):
    """TRL's ``DPOConfig`` with LoRA options, soft labels and CPU-friendly defaults.

    Changed defaults: ``learning_rate`` 5e-5 (a LoRA rate: about 1e-6 suits ``lora=False``),
    ``max_length`` 256, batch size 2 with 2 accumulation steps (an effective batch of 4 at
    two thirds of the memory of 4 a pass), one epoch, no activation checkpointing, no checkpoints
    (``save_strategy='no'``). bf16 mixed precision stays on (TRL's default), on CPU too:
    ``use_cpu`` is set when there is no GPU. ``output_dir`` is ignored: the model goes to
    ``train_dpo``'s ``out_dir``.
    """

    soft_labels: bool = field(
        default=True,
        metadata={
            "help": "Use the feedback's soft labels: EXO loss with label_smoothing = "
            "mean(1 - soft_label). False keeps loss_type and label_smoothing as set."
        },
    )
    min_soft_label: float = field(
        default=0.0,
        metadata={"help": "Drop pairs whose soft_label is below this before training."},
    )
    learning_rate: float = 5e-5
    max_length: int | None = 256
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 2
    num_train_epochs: float = 1.0
    # TRL turns the deprecated alias on; None lets activation_checkpointing (default off) decide.
    gradient_checkpointing: bool = None  # type: ignore[assignment]
    save_strategy: str = "no"

    def __post_init__(self) -> None:
        cpu_unless_accelerated(self)
        super().__post_init__()  # type: ignore[no-untyped-call]


def smoothing_from_soft_labels(records: Sequence[PreferenceRecord]) -> float:
    """``mean(1 - soft_label)``, clipped to [EPS_MIN, EPS_MAX]."""
    if not records:
        raise InputError("no preference pairs to take soft labels from")
    eps = sum(1.0 - r.soft_label for r in records) / len(records)
    return min(max(eps, EPS_MIN), EPS_MAX)


def train_dpo(
    base_model: str,
    preference_files: Sequence[Path],
    out_dir: Path,
    config: CaiDPOConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> TrainResult:
    """DPO-train ``base_model`` (a model spec, usually the SFT model) on preference files.

    Saves the adapter (or full model) and tokenizer plus ``train_meta.json`` to ``out_dir``;
    load it back as ``run:OUT_DIR``. Raises InputError for a bad file (naming file:line), an
    unusable spec, no pairs left after ``min_soft_label``, or ``soft_labels`` together with a
    non-default ``loss_type``.
    """
    config = config or CaiDPOConfig()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)  # before anything slow
    records, files = read_preferences(preference_files)
    kept = [r for r in records if r.soft_label >= config.min_soft_label]
    if not kept:
        raise InputError(
            f"no preference pairs to train on ({len(records)} read, none with "
            f"soft_label >= {config.min_soft_label})"
        )
    loss: dict[str, Any] = {}
    if config.soft_labels:
        if list(config.loss_type) != ["sigmoid"]:
            raise InputError(
                f"soft_labels=True sets the loss itself; set soft_labels=False to train with "
                f"loss_type={config.loss_type}"
            )
        loss = {"loss_type": ["exo_pair"], "label_smoothing": smoothing_from_soft_labels(kept)}
    loaded = load_for_training(base_model, config, "causal", cache_dir)
    ref_model = None
    if not config.lora:
        ref_model = copy.deepcopy(loaded.model).eval().requires_grad_(False)
    with staging(out_dir) as tmp:
        args = prepare_args(config, tmp)
        for key, value in loss.items():
            setattr(args, key, value)
        trainer = DPOTrainer(
            model=loaded.model,
            ref_model=ref_model,
            args=args,
            train_dataset=Dataset.from_list(preference_rows(kept)),
            processing_class=loaded.tokenizer,
            peft_config=loaded.peft_config,
        )
        keys = (*COMMON_KEYS, "beta", "loss_type", "label_smoothing", "soft_labels")
        settings = summary(args, (*keys, "min_soft_label"))
        settings["pairs_dropped"] = len(records) - len(kept)
        return train_and_save(
            trainer, loaded, method="dpo", out_dir=out_dir, tmp=tmp, data=files, config=settings
        )
