"""What every training method shares: loading the base model, saving the result, the run record.

Owns: turning a model spec (``embedded``, ``hf:PATH_OR_ID[+ADAPTER]``, ``run:DIR``) into a model
and tokenizer ready for a TRL trainer, the LoRA options and ``LoraConfig``, the output directory
(written to a temporary sibling and renamed into place, so a crash never leaves a half-written
model that looks finished), the ``train_meta.json`` record (``TrainResult``), and the
train-then-save step.
Must not know: which loss a method uses or what its data means. torch, transformers, peft and
trl are imported inside functions only.

A base that is itself a LoRA adapter (``run:DIR/models/sft``): with LoRA the adapter is loaded
trainable and training continues it (the output is one adapter on the original base); with a
full fine-tune the adapter is merged into the base first. Either way the saved directory loads
back as ``run:OUT_DIR`` with no other file: an adapter's ``adapter_config.json`` names a base
model directory (or hub id) that ``cai.backends`` can load, for ``embedded`` the converted cache.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cai.backends import FALLBACK_CHAT_TEMPLATE as _FALLBACK_TEMPLATE
from cai.backends import ModelSource, cpu_has_fast_bf16, resolve_spec
from cai.errors import InputError, missing
from cai.records import Strict
from cai.train._data import DataFile

META = "train_meta.json"
"""Written last into a finished output directory; its presence marks the directory complete."""
Method = Literal["sft", "dpo", "reward", "pretrain"]
Task = Literal["causal", "reward"]


class TrainResult(Strict):
    """What a training run did; saved as ``train_meta.json`` beside the weights."""

    version: Literal[1] = 1
    """Schema version."""
    method: Method
    """sft, dpo, reward or pretrain."""
    base_model: str
    """The base model spec as given (``embedded``, ``hf:...``, ``run:...``)."""
    base_path: str
    """The base model dir (or hub id) the spec resolved to."""
    base_adapter: str | None = None
    """The base spec's LoRA adapter dir, continued (LoRA) or merged (full fine-tune)."""
    saved: Literal["adapter", "full", "probe"]
    """What ``out_dir`` holds: a PEFT adapter on ``base_path``, a full model, or a reward probe
    (a linear head on ``base_path``'s hidden states, ``cai.train.probe``)."""
    out_dir: str
    """Where the model, tokenizer and this record were saved; load it as ``run:OUT_DIR``."""
    data: list[DataFile]
    """Every input file with its sha256 and record count."""
    n_examples: int = Field(ge=0)
    """Examples in the training set (after mixing, filtering and TRL's length filter)."""
    n_helpful: int = Field(0, ge=0)
    """SFT only: helpfulness examples mixed in with the revisions."""
    steps: int = Field(ge=0)
    """Optimizer steps taken."""
    final_loss: float | None
    """The last logged training loss (the run's mean loss when no step was logged)."""
    losses: list[float] = Field(default_factory=list)
    """Every logged training loss in order, ``logging_steps`` apart."""
    seconds: float = Field(ge=0.0)
    """Wall time of the training loop (not counting loading and saving)."""
    config: dict[str, Any]
    """The settings that shaped the run (learning rate, steps, LoRA, loss...)."""
    versions: dict[str, str]
    """Versions of torch, transformers, trl and peft."""
    resumed_from: str | None = None
    """The checkpoint an interrupted run continued from (None: trained from the start)."""

    @property
    def spec(self) -> str:
        """The model spec of the trained model (``probe:`` for a reward probe)."""
        return f"{'probe' if self.saved == 'probe' else 'run'}:{self.out_dir}"


@dataclass
class LoraFields:
    """LoRA options shared by every ``Cai*Config`` (mixed into TRL's config classes)."""

    lora: bool = field(
        default=True,
        metadata={"help": "Train a LoRA adapter (default); False fine-tunes every weight."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names to adapt; None means every linear layer but the head."},
    )
    lora_layers: int | None = field(
        default=None,
        metadata={
            "help": "Adapt only the top N transformer layers (None: all). The backward pass then "
            "stops at the lowest adapted layer: on SmolLM2-135M, 10 of 30 layers train 3.3x "
            "faster on CPU (255 against 77 tokens/s)."
        },
    )


def _torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401  (checked here for the install hint)
    except ImportError as exc:
        raise missing(exc.name or "torch", "train") from None
    return torch


def cpu_unless_accelerated(config: Any) -> None:
    """Set ``use_cpu`` on a machine without a GPU (call before TRL's ``__post_init__``).

    transformers refuses ``bf16`` without a GPU unless ``use_cpu`` is set, and bf16 autocast is
    the faster choice on CPUs with AVX-512 (about 1.5x for SmolLM2-135M), so TRL's default
    (``bf16=True`` unless ``fp16``) is kept there. On a CPU without fast bfloat16 kernels
    (AVX2 only, where a bfloat16 product runs ~100x slower than float32) bf16 is turned off.
    """
    torch = _torch()
    xpu = getattr(torch, "xpu", None)
    accelerated = (
        torch.cuda.is_available()
        or torch.backends.mps.is_available()
        or (xpu is not None and xpu.is_available())
    )
    if not accelerated:
        config.use_cpu = True
        if not cpu_has_fast_bf16(torch):
            # Explicitly False: TRL turns a None into True in its own __post_init__.
            config.bf16 = False


def lora_config(
    config: LoraFields,
    task: Task,
    n_layers: int | None = None,
    linear_names: list[str] | None = None,
) -> Any:
    """The ``peft.LoraConfig`` for these options (``n_layers`` and ``linear_names``, the model's
    layer count and linear module names, are needed when ``lora_layers`` picks top layers)."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise missing("peft", "train") from None
    layers = None
    if config.lora_layers is not None:
        if config.lora_layers < 1:
            raise InputError(f"lora_layers must be at least 1, got {config.lora_layers}")
        if n_layers is not None:
            layers = list(range(max(n_layers - config.lora_layers, 0), n_layers))
    targets: Any = config.lora_target_modules or "all-linear"
    if layers is not None and targets == "all-linear":
        targets = linear_names  # PEFT takes layer indices with module names only
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        task_type="SEQ_CLS" if task == "reward" else "CAUSAL_LM",
    )


@dataclass
class Loaded:
    """A base model ready to hand to a TRL trainer."""

    spec: str
    """The spec it was loaded from."""
    source: ModelSource
    """Where the weights came from."""
    model: Any
    """A transformers model, or a ``PeftModel`` whose adapter continues training."""
    tokenizer: Any
    """Its tokenizer, with a pad token and a chat template."""
    peft_config: Any | None
    """A fresh ``LoraConfig`` for the trainer, or None (full fine-tune or continued adapter)."""


def load_for_training(
    spec: str, config: LoraFields, task: Task, cache_dir: str | Path | None = None
) -> Loaded:
    """Load a spec's model (float32) and tokenizer for training; InputError if it cannot load.

    ``task='reward'`` loads a sequence-classification model with one output (a fresh score
    head). A base adapter is continued (LoRA, causal) or merged into the base (otherwise).
    """
    torch = _torch()
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    src = resolve_spec(spec, cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            src.tokenizer or src.model, revision=None if src.tokenizer else src.revision
        )
        if task == "reward":
            model: Any = AutoModelForSequenceClassification.from_pretrained(
                src.model, revision=src.revision, dtype=torch.float32, num_labels=1
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(
                src.model, revision=src.revision, dtype=torch.float32
            )
    except OSError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"model spec {spec!r}: cannot load {src.model}: {first}") from None
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None:
        raise InputError(f"model spec {spec!r}: {src.model} is quantised; train a plain copy")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        # The same ChatML fallback the hf backend renders with, so training and inference agree.
        tokenizer.chat_template = _FALLBACK_TEMPLATE
    n_layers = getattr(model.config, "num_hidden_layers", None)
    heads = {"lm_head", "score", "classifier"}
    linear = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, mod in model.named_modules()
            if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in heads
        }
    )
    peft_config = lora_config(config, task, n_layers, linear) if config.lora else None
    if src.adapter is not None:
        from peft import PeftConfig, PeftModel

        adapter = str(src.adapter)
        if config.lora and task == "causal":
            model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
            peft_config = None
        else:
            base_cfg = PeftConfig.from_pretrained(adapter)
            if task == "reward":
                # A chat-model adapter on the score-head model: only its layer weights apply, so
                # load it task-free (PEFT's causal wrapper would look for generation methods).
                base_cfg.task_type = None
            model = PeftModel.from_pretrained(model, adapter, config=base_cfg).merge_and_unload()
            model.requires_grad_(True)  # PEFT froze the base weights; they are the model now
    return Loaded(spec, src, model, tokenizer, peft_config)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output dir that holds anything but a previous training output."""
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / META).is_file())
    ):
        raise InputError(
            f"{out_dir}: exists and is not an earlier training output (no {META}); "
            "give a new or empty directory"
        )


@contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A temporary sibling of ``out_dir`` that replaces it when the block succeeds.

    Siblings left by a process that was killed mid-training (``finally`` never ran there) are
    removed first: a killed training stage restarts clean and leaves no orphaned directories.
    """
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in (
        *out_dir.parent.glob(f".{out_dir.name}.*.tmp"),
        *out_dir.parent.glob(f".{out_dir.name}.old-*"),
    ):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare_args(config: Any, tmp: Path) -> Any:
    """A copy of a TRL config that writes under ``tmp`` (the caller's object is not changed).

    With checkpoints on (``save_strategy`` not ``no``) the config's own ``output_dir`` is kept:
    checkpoints go there, outside the temporary directory, so an interrupted run resumes from
    the last one (``train_and_save``) and they are removed once the model is saved.
    """
    args = copy.copy(config)
    if _strategy(args) == "no":
        args.output_dir = str(tmp)
    return args


def _strategy(args: Any) -> str:
    value = getattr(args, "save_strategy", "no")
    return str(value.value if isinstance(value, Enum) else value)


def last_checkpoint(args: Any) -> str | None:
    """The newest ``checkpoint-N`` under a config's ``output_dir`` when checkpoints are on."""
    if _strategy(args) == "no" or not Path(args.output_dir).is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    found: str | None = get_last_checkpoint(args.output_dir)  # type: ignore[no-untyped-call]
    return found


def summary(args: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The named settings of a config, JSON-ready."""
    out: dict[str, Any] = {}
    for key in keys:
        value = getattr(args, key, None)
        if isinstance(value, Enum):
            value = value.value
        elif value is not None and not isinstance(value, str | int | float | bool | list | dict):
            value = str(value)
        out[key] = value
    return out


LORA_KEYS = ("lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_layers")
COMMON_KEYS = (
    "seed",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "bf16",
    "activation_checkpointing",
    *LORA_KEYS,
)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("torch", "transformers", "trl", "peft"):
        with suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


def train_and_save(
    trainer: Any,
    loaded: Loaded,
    *,
    method: Method,
    out_dir: Path,
    tmp: Path,
    data: list[DataFile],
    config: dict[str, Any],
    n_helpful: int = 0,
    merge: bool = False,
) -> TrainResult:
    """Run ``trainer.train()``, save the model and tokenizer into ``tmp`` and write the record.

    A DPO run that continued an adapter holds a frozen copy of it (TRL's ``ref`` adapter, the
    reference policy); it is dropped before saving so the directory holds one adapter. With
    ``merge`` a trained adapter is merged and the full model saved.
    """
    resume = last_checkpoint(trainer.args)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    model = trainer.accelerator.unwrap_model(trainer.model)
    is_adapter = hasattr(model, "peft_config")
    if is_adapter and "ref" in model.peft_config:
        model.delete_adapter("ref")
    if is_adapter and merge:
        model.merge_and_unload().save_pretrained(str(tmp))
        loaded.tokenizer.save_pretrained(str(tmp))
        is_adapter = False
    else:
        trainer.save_model(str(tmp))
    if is_adapter:
        _point_adapter_at_base(tmp, loaded.source)
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    result = TrainResult(
        method=method,
        base_model=loaded.spec,
        base_path=loaded.source.model,
        base_adapter=str(loaded.source.adapter) if loaded.source.adapter else None,
        saved="adapter" if is_adapter else "full",
        out_dir=str(out_dir.resolve()),
        data=data,
        n_examples=len(trainer.train_dataset),
        n_helpful=n_helpful,
        steps=int(trainer.state.global_step),
        final_loss=losses[-1] if losses else float(output.training_loss),
        losses=losses,
        seconds=round(seconds, 3),
        config=config,
        versions=_versions(),
        resumed_from=Path(resume).name if resume else None,
    )
    (tmp / META).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if _strategy(trainer.args) != "no" and Path(trainer.args.output_dir) != tmp:
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)  # the model is saved now
    return result


def _point_adapter_at_base(adapter_dir: Path, source: ModelSource) -> None:
    """Make ``base_model_name_or_path`` the base the backends load (an absolute local path)."""
    path = adapter_dir / "adapter_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    local = Path(source.model).expanduser()
    cfg["base_model_name_or_path"] = str(local.resolve()) if local.exists() else source.model
    cfg["revision"] = source.revision
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_result(out_dir: str | Path) -> TrainResult:
    """The ``train_meta.json`` of a finished training output."""
    path = Path(out_dir) / META
    try:
        return TrainResult.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError:
        raise InputError(f"{path}: no such file (not a finished training output)") from None
    except ValueError as exc:
        raise InputError(f"{path}: not a valid training record: {exc}") from None
