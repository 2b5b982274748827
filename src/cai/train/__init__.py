"""Training: a thin layer over TRL and PEFT, one module per method.

- ``cai.train.sft``: ``CaiSFTConfig``, ``train_sft`` (SL-CAI revisions mixed with helpfulness data)
- ``cai.train.dpo``: ``CaiDPOConfig``, ``train_dpo`` (AI-feedback preferences, soft labels)
- ``cai.train.reward``: ``CaiRewardConfig``, ``train_reward``, ``load_reward_model``
- ``cai.train.probe``: ``ProbeConfig``, ``train_reward_probe`` (a linear reward head on a frozen
  model's hidden states, fitted by cross-validation; loads as ``probe:OUT_DIR``)
- ``cai.train.pretrain``: ``CaiPretrainConfig``, ``train_pretrain`` (constitutional pre-training:
  continued training on segments tagged with control tokens, conditioned on ``<|ok|>`` after)
- ``cai.train.steer``: ``SteerConfig``, ``fit_steering``, ``direction_auc`` (constitutional
  steering vectors from satisfying vs violating replies; used as ``SPEC+steer:FILE@ALPHA``)

``cai.train.launch`` runs a ``TrainJob`` file; ``launch`` starts it on N processes under
accelerate, with a DDP, FSDP or DeepSpeed ZeRO preset (``distributed_args``).

Every ``train_*`` saves a model directory with a ``train_meta.json`` (``TrainResult``); SFT, DPO
and pre-training outputs load back as the model spec ``run:OUT_DIR``.

Owns: the training stage of the pipeline, from record files to a saved model.
Must not know: how the records were made (critique, feedback), or how models are evaluated.
``import cai.train`` does not import torch or TRL: the names below load their module on first
use, and a missing dependency raises ``MissingDependencyError`` with the install hint.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cai.train._common import META, TrainResult, read_result
from cai.train._corpus import CorpusRow, PretrainSegment, read_corpus, read_segments
from cai.train._data import DataFile
from cai.train._distributed import (
    DISTRIBUTED,
    Distributed,
    TrainJob,
    deepspeed_config,
    distributed_args,
    launch,
    launch_command,
    run_job,
    train,
)

if TYPE_CHECKING:
    from cai.train.dpo import CaiDPOConfig, train_dpo
    from cai.train.pretrain import CaiPretrainConfig, train_pretrain
    from cai.train.probe import ProbeConfig, ProbePair, train_reward_probe
    from cai.train.reward import CaiRewardConfig, load_reward_model, train_reward
    from cai.train.sft import CaiSFTConfig, train_sft

_LAZY = {
    "CaiSFTConfig": "sft",
    "train_sft": "sft",
    "CaiDPOConfig": "dpo",
    "train_dpo": "dpo",
    "CaiPretrainConfig": "pretrain",
    "train_pretrain": "pretrain",
    "CaiRewardConfig": "reward",
    "train_reward": "reward",
    "load_reward_model": "reward",
    "ProbeConfig": "probe",
    "ProbePair": "probe",
    "train_reward_probe": "probe",
}

__all__ = [
    "DISTRIBUTED",
    "META",
    "CaiDPOConfig",
    "CaiPretrainConfig",
    "CaiRewardConfig",
    "CaiSFTConfig",
    "CorpusRow",
    "DataFile",
    "Distributed",
    "PretrainSegment",
    "ProbeConfig",
    "ProbePair",
    "TrainJob",
    "TrainResult",
    "deepspeed_config",
    "distributed_args",
    "launch",
    "launch_command",
    "load_reward_model",
    "read_corpus",
    "read_result",
    "read_segments",
    "run_job",
    "train",
    "train_dpo",
    "train_pretrain",
    "train_reward",
    "train_reward_probe",
    "train_sft",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cai.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cai.train.{module}"), name)
