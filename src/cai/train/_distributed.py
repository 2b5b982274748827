"""Multi-process training: DeepSpeed ZeRO / FSDP / DDP presets and the accelerate launcher.

Owns: the named presets a recipe or ``cai train --distributed`` selects (each a set of TRL
config fields: ``deepspeed`` pointing at a bundled ZeRO config, or ``fsdp``/``fsdp_config``),
the ``TrainJob`` file that describes one training run, and ``launch``, which runs that job under
``accelerate launch --num_processes N`` in a subprocess and reads back its ``TrainResult``.
Must not know: how the training data was made or what a stage does with the model.

One process (the default) trains in the calling process, as before. With N > 1 processes every
rank runs ``python -m cai.train.launch JOB.json``; TRL and accelerate handle the sharding.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from cai.errors import BackendError, InputError
from cai.records import Strict
from cai.train._common import META, Method, TrainResult, read_result

Distributed = Literal["none", "ddp", "fsdp", "zero2", "zero3"]
DISTRIBUTED: tuple[str, ...] = get_args(Distributed)


def deepspeed_config(stage: Literal[2, 3]) -> Path:
    """The bundled DeepSpeed ZeRO config (``auto`` values are filled in by transformers)."""
    return Path(str(files("cai.train") / "configs" / f"zero{stage}.json"))


def distributed_args(preset: str) -> dict[str, Any]:
    """TRL/transformers config fields for a preset (``none`` gives none)."""
    if preset == "none":
        return {}
    if preset == "ddp":
        return {"ddp_find_unused_parameters": False}
    if preset == "fsdp":
        # LoRA leaves most weights frozen; use_orig_params lets FSDP shard them anyway.
        return {
            "fsdp": "full_shard auto_wrap",
            "fsdp_config": {"use_orig_params": True, "activation_checkpointing": False},
        }
    if preset in ("zero2", "zero3"):
        return {"deepspeed": str(deepspeed_config(2 if preset == "zero2" else 3))}
    raise InputError(f"unknown distributed preset {preset!r}: use {', '.join(DISTRIBUTED)}")


class TrainJob(Strict):
    """One training run, written to a JSON file for every rank of a launched job to read."""

    version: Literal[1] = 1
    method: Method
    """sft, dpo, reward or pretrain."""
    base_model: str
    """Model spec to train."""
    data: list[str]
    """Training record files (SFT examples, preferences or pre-training segments)."""
    helpful: list[str] = Field(default_factory=list)
    """SFT only: helpfulness files mixed in."""
    out_dir: str
    """Where the trained model is saved."""
    config: dict[str, Any]
    """Keyword arguments of the method's TRL config class (CaiSFTConfig, CaiDPOConfig...)."""


def run_job(job: TrainJob) -> TrainResult:
    """Train in this process (what every rank of a launched job does)."""
    out = Path(job.out_dir)
    data = [Path(p) for p in job.data]
    if job.method == "sft":
        from cai.train.sft import CaiSFTConfig, train_sft

        helpful = [Path(p) for p in job.helpful]
        return train_sft(job.base_model, data, helpful, out, CaiSFTConfig(**job.config))
    if job.method == "pretrain":
        from cai.train.pretrain import CaiPretrainConfig, train_pretrain

        return train_pretrain(job.base_model, data, out, CaiPretrainConfig(**job.config))
    if job.method == "dpo":
        from cai.train.dpo import CaiDPOConfig, train_dpo

        return train_dpo(job.base_model, data, out, CaiDPOConfig(**job.config))
    from cai.train.reward import CaiRewardConfig, train_reward

    return train_reward(job.base_model, data, out, CaiRewardConfig(**job.config))


def launch_command(
    job_file: Path, num_processes: int, accelerate_config: str | None = None
) -> list[str]:
    """The ``accelerate launch`` command line that runs ``job_file`` on ``num_processes``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cmd += ["--config_file", accelerate_config]
    cmd += ["--num_processes", str(num_processes), "-m", "cai.train.launch", str(job_file)]
    return cmd


def launch(job: TrainJob, num_processes: int, accelerate_config: str | None = None) -> TrainResult:
    """Run ``job`` under accelerate on ``num_processes`` processes; its saved ``TrainResult``.

    The job file is written beside the output directory; the subprocess's output goes to the
    terminal. A failed launch raises BackendError naming the command and its exit code.
    """
    out = Path(job.out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    job_file = out.parent / f".{out.name}-job.json"
    job_file.write_text(job.model_dump_json(indent=2) + "\n", encoding="utf-8")
    cmd = launch_command(job_file, num_processes, accelerate_config)
    code = subprocess.run(cmd, check=False).returncode
    if code != 0 or not (out / META).is_file():
        raise BackendError(f"training launch failed (exit {code}): {' '.join(cmd)}")
    return read_result(out)


def train(
    job: TrainJob, num_processes: int = 1, accelerate_config: str | None = None
) -> TrainResult:
    """Train ``job`` in this process, or under ``accelerate launch`` on ``num_processes``."""
    if num_processes > 1:
        return launch(job, num_processes, accelerate_config)
    return run_job(job)
