"""Recipes: one YAML file says which models fill each role, which constitution and prompt sets
a run uses, and the settings of every stage.

Owns: the recipe schema (strict, versioned, a docstring per field, so ``cai run --help`` can list
everything a recipe can set) and loading it with ``FILE:LINE`` errors.
Must not know: how stages run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cai.store import load_yaml_model
from cai.train import Distributed


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Models(_Section):
    """Model spec per role."""

    policy: str = "embedded"
    """The model being trained: drafts responses and is fine-tuned."""
    critic: str = "embedded"
    """Writes critiques and revisions in the SL-CAI stage."""
    feedback: list[str] = ["embedded"]
    """Compares response pairs under a principle (several = an ensemble)."""
    judge: str | None = "embedded"
    """Judges helpfulness in evaluation (None: no win rate)."""
    attacker: str = "embedded"
    """Rewrites prompts to break the policy in the red-team stage (when it is enabled)."""


class Prompts(_Section):
    """Prompt sets (``builtin:NAME``, a .jsonl/.csv file or a dataset id), train split."""

    red_team: list[str] = ["builtin:harmful"]
    """Harmful requests that elicit drafts for critique and revision."""
    helpful: list[str] = ["builtin:helpful"]
    """Ordinary requests whose answers are mixed into the SFT data."""
    pairs: list[str] = ["builtin:harmful", "builtin:borderline"]
    """Prompts the SFT model answers twice for AI feedback."""
    red_team_limit: int = Field(48, ge=1)
    """Red-team prompts used (per run; `--limit` overrides every limit)."""
    helpful_limit: int = Field(48, ge=0)
    """Helpful prompts used."""
    pairs_limit: int = Field(32, ge=1)
    """Prompts sampled for preference pairs (spread over the pair sets)."""
    lookalike: list[str] = ["builtin:borderline"]
    """Safe requests that look harmful: the policy's own non-refusing answers join the SFT
    mix, so it learns where the boundary is, not to refuse."""
    lookalike_limit: int = Field(48, ge=0)
    """Look-alike prompts used (0: none)."""


class Generation(_Section):
    """Sampling settings shared by respond and critique."""

    max_new_tokens: int = Field(128, ge=8)
    """Token limit for drafts and revisions (critiques get 3/4 of it)."""
    batch_size: int = Field(32, ge=1)
    """Requests per forward batch on transformers backends (a token budget also caps it)."""
    critic_repetition_penalty: float = Field(1.0, gt=0)
    """Repetition penalty for critiques and revisions (1.0 = none; drafts never get one)."""


class CritiqueStage(_Section):
    """SL-CAI critique-revision settings."""

    rounds: int = Field(1, ge=1)
    """Critique-revision rounds per prompt."""
    few_shot: int = Field(2, ge=0)
    """Worked examples from the constitution shown to the critic."""
    router: str | None = None
    """Embedder of the context/risk router (minilm, hash): principles are sampled from the
    layers and directions each prompt's route admits. None: flat sampling."""
    router_llm: str | None = None
    """Model spec also asked, per topic, whether each prompt is about it (needs ``router``)."""
    escalation: bool = False
    """Round k draws its principle from level k of the constitution's ``escalation`` (rising
    specificity or tier; the last level repeats). The constitution must define one."""
    stop_early: bool = False
    """Stop a prompt's rounds when the critique finds nothing or the revision is unchanged;
    each record says which (``stopped_early``) and how many rounds it ran."""


class _TrainStage(_Section):
    """Settings every training stage shares (a LoRA adapter by default)."""

    lora: bool = True
    """LoRA adapter (True) or full fine-tune."""
    epochs: float = Field(2.0, gt=0)
    """Passes over the training data."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate."""
    batch_size: int = Field(4, ge=1)
    """Per-device batch size (examples in one forward and backward pass)."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Batches per optimizer step: the effective batch is ``batch_size`` times this."""
    max_length: int = Field(256, ge=16)
    """Tokens per example (longer ones are truncated)."""
    lora_layers: int | None = Field(None, ge=1)
    """Adapt only the top N transformer layers (None: all); the backward pass stops at the
    lowest one, so on the embedded model 10 of 30 layers train 3.3x faster on CPU."""
    report_to: str = "none"
    """Training logger: none, tensorboard, wandb."""
    extra: dict[str, Any] = {}
    """Any other TRL config field, passed through (e.g. deepspeed, fsdp)."""
    distributed: Distributed = "none"
    """Multi-process preset: ddp, fsdp, or DeepSpeed ZeRO stage 2/3 (bundled configs)."""
    num_processes: int = Field(1, ge=1)
    """Processes (GPUs) to train on; above 1 the stage runs under ``accelerate launch``."""
    accelerate_config: str | None = None
    """An accelerate config file for the launch (multi-node, mixed precision...)."""

    def trainer_args(self, output_dir: str, seed: int) -> dict[str, Any]:
        """Keyword arguments for the TRL config subclass of this stage."""
        from cai.train import distributed_args

        return {
            **distributed_args(self.distributed),
            "output_dir": output_dir,
            "lora": self.lora,
            "num_train_epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "per_device_train_batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_length": self.max_length,
            "lora_layers": self.lora_layers,
            "report_to": self.report_to,
            "seed": seed,
            **self.extra,
        }


class PretrainStage(_TrainStage):
    """Constitutional pre-training (off by default; examples/constitutional-pretraining.yaml):
    continued training of the policy on text segments each tagged with a control token the
    scorer chose (``<|ok|>``, or ``<|violates:ID|>``), saved as models/pretrain, which is
    conditioned on ``<|ok|>`` whenever it is loaded (``run:DIR/models/pretrain``;
    ``+cond:none`` drops the token). It runs after critique, on the run's own texts."""

    enabled: bool = False
    """Run the stage (otherwise it is skipped)."""
    corpus: list[str] = []
    """Corpus files (JSONL rows of text, prompt, harmful, principle_id, label; or plain text,
    one segment a paragraph). Empty: the run's own texts: red-team drafts and usable revisions
    (data/sl_cai.jsonl) and the policy's answers to helpful and look-alike prompts."""
    detector: str = "rules"
    """Refusal detector of the scorer (rules: the one that picks respond's SFT answers, so the
    evaluation's hybrid and embedding detectors stay independent of the labels)."""
    lora: Literal[False] = False
    """Always a full model: a LoRA adapter cannot carry the new tokens' resized embeddings."""
    train_layers: int | None = Field(8, ge=1)
    """Train only the top N decoder layers and the final norm, embeddings frozen (None: every
    weight); the backward pass stops at the lowest, so fewer layers train faster on CPU."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the corpus."""
    learning_rate: float = Field(1e-4, gt=0)
    """Peak learning rate."""
    checkpoint_steps: int = Field(10, ge=1)
    """Optimizer steps between checkpoints (an interrupted stage resumes from the last)."""
    evaluate: bool = True
    """Also evaluate the pretrained model, conditioned on <|ok|> and unconditioned, beside
    base, sft and dpo in the evaluate stage."""


class SFTStage(_TrainStage):
    """Supervised fine-tuning on revisions plus helpfulness data (TRL SFTTrainer)."""

    base: Literal["policy", "pretrain"] = "policy"
    """What SFT starts from: models.policy, or models/pretrain (the pretrain stage must be on;
    the SFT adapter then sits on the pretrained weights and answers unconditioned)."""

    helpful_ratio: float = Field(2.0, ge=0)
    """Helpfulness examples (ordinary and safe look-alike answers) per revision example."""
    learning_rate: float = Field(1e-3, gt=0)
    """Peak learning rate (a LoRA on 4 layers and ~50 steps needs a high one)."""
    lora_layers: int | None = Field(4, ge=1)
    """Adapt only the top N transformer layers (None: all)."""


class EvaluatorTraining(_TrainStage):
    """Training an evaluator (the critic or the feedback model) on constitutional
    demonstrations before it is used: a LoRA adapter on the role's model, trained on the chats
    that role is sent, principle in the input. Cached by demonstrations, base model, settings
    and seed under the cai cache, so a second run reuses the adapter."""

    enabled: bool = True
    """Train (off, or a role whose model is not a local transformers model: the role's model is
    used as given, and the report says so)."""
    demonstrations: str | None = None
    """Demonstrations JSONL (None: the bundled set, written for the default constitution; a
    file of yours must name principles of the run's constitution)."""
    limit: int | None = Field(None, ge=1)
    """Train-split demonstrations used, a seeded sample (None: all)."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the demonstrations."""
    learning_rate: float = Field(2e-3, gt=0)
    """Peak learning rate (one short epoch of a small LoRA: 3e-4 left the critic's loss at 3.1
    and its revisions copies of its critiques; 2e-3 gave declining revisions)."""
    batch_size: int = Field(2, ge=1)
    """Per-device batch size (2: twice the optimizer steps of 4 for the same compute)."""
    max_length: int = Field(512, ge=16)
    """Tokens per example (the longest bundled critic chat is 448)."""
    lora_layers: int | None = Field(4, ge=1)
    """Adapt only the top N layers (see the training stages); 4 of 30 gave more usable
    revisions than 10 in the same time (13 of 16 against 5 of 16, bench/README.md)."""
    checkpoint_steps: int = Field(10, ge=1)
    """Optimizer steps between checkpoints (an interrupted stage resumes from the last)."""


class FeedbackTraining(EvaluatorTraining):
    """Training the feedback model: a reward probe (default) or a LoRA adapter that answers the
    comparison with a letter.

    ``probe``: the frozen model reads each reply (principle question and request in the user
    turn) and a linear head on one layer's mean hidden state, fitted to convergence, scores it;
    the layer and L2 strength are chosen by cross-validation on the training demonstrations.
    It needs forward passes only (no backward pass) and has no position bias by construction.
    ``lora``: the adapter settings above; on the embedded model one CPU epoch of it learned to
    answer "B" (bench/README.md).
    """

    method: Literal["probe", "lora"] = "probe"
    """The feedback model's form: a reward probe (``probe:models/feedback``) or a LoRA adapter
    (``run:models/feedback``)."""
    probe_depths: list[float] = Field(default_factory=lambda: [0.4, 0.55, 0.7, 0.85])
    """Probe only: candidate layers as fractions of the model's depth."""
    probe_l2: list[float] = Field(default_factory=lambda: [1e-3, 1e-2, 1e-1])
    """Probe only: candidate L2 strengths (chosen with the layer by cross-validation)."""

    @field_validator("probe_depths")
    @classmethod
    def _depths(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < d <= 1 for d in v):
            raise ValueError("probe_depths must be fractions in (0, 1]")
        return v


class PairsStage(_Section):
    """Sampling two responses per prompt from the SFT model."""

    temperature: float = Field(0.9, gt=0)
    """Sampling temperature (must be > 0 for two different samples)."""
    top_p: float = Field(0.95, gt=0, le=1)
    """Nucleus sampling mass."""


class FeedbackStage(_Section):
    """AI feedback settings."""

    principles_per_pair: int = Field(1, ge=1)
    """Principles each pair is compared under (ensemble when > 1)."""
    cot: bool = False
    """Reason step by step before answering."""
    few_shot: int = Field(0, ge=0)
    """Worked comparisons shown to the feedback model."""
    tie_threshold: float = Field(0.5, gt=0, le=1)
    """Two orders disagreeing by more than this make a tie (kept out of training)."""
    min_confidence: float = Field(0.05, ge=0, lt=0.5)
    """Soft labels closer than this to 0.5 are ties."""
    panel: Literal["mean", "min", "borda"] | None = None
    """Also judge every pair once per stakeholder group and aggregate (weighted mean, minimum
    so no group is harmed, or Borda); writes data/panel/ and reports group disagreement."""


class DPOStage(_TrainStage):
    """Direct preference optimisation on the SFT model (TRL DPOTrainer)."""

    epochs: float = Field(1.0, gt=0)
    """Passes over the preference pairs."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate."""
    batch_size: int = Field(2, ge=1)
    """Per-device batch size. A DPO batch holds both responses of each pair, and their logits
    over the whole vocabulary are most of its memory: 2 pairs a pass, accumulated twice (an
    effective batch of 4), peak at 3.4 GB on the embedded model where 4 a pass took 5.0 GB."""
    gradient_accumulation_steps: int = Field(2, ge=1)
    """As for every training stage; 2 here, for an effective batch of 4 (see ``batch_size``)."""
    beta: float = Field(0.1, gt=0)
    """DPO temperature."""
    revision_pairs: bool = True
    """Also train on SL-CAI pairs (final revision preferred to the policy's draft, from every
    non-degenerate trace) besides the AI-feedback pairs; both counts go into the report."""
    boundary_pairs: int = Field(48, ge=0)
    """Also train on up to this many boundary pairs: on a safe look-alike request (a training
    prompt of the look-alike set), the policy's own helpful answer preferred to a decline taken
    from a usable revision. They mirror the revision pairs, so DPO learns where declining stops
    being right rather than that declines win. Labelled by construction (the prompt set says
    the request is safe), not by the feedback model: in a default run the reward probe
    preferred the decline in 41 of 44 such pairs (bench/README.md)."""


class CalibrateStage(_Section):
    """Judge calibration before use: every feedback model and the judge answer labelled pairs
    (both orders); numbers from a judge whose kappa interval includes 0 are marked 'not
    validated' in metrics.json, the report and the end-of-run summary."""

    enabled: bool = True
    """Calibrate (off: every judge-made number is marked 'never calibrated')."""
    labels: str | None = None
    """Pairwise label file (default: the bundled calibration pairs)."""
    per_category: int | None = Field(4, ge=2)
    """Pairs per category of the bundled set, half with the better reply in each slot (None:
    all 256; a user file: all rows). 4 (16 pairs, 32 orderings) costs ~40 s a judge on the
    embedded model in float32; enough to flag a judge at chance, too few to rank good ones."""


class EvaluateStage(_Section):
    """Held-out evaluation of base, SFT and DPO models."""

    suites: list[str] = ["builtin:harmful", "builtin:borderline", "builtin:helpful"]
    """Suites (held-out split of the bundled sets by default)."""
    limit: int = Field(24, ge=1)
    """Prompts per suite."""
    detector: str = "hybrid"
    """Refusal detector of the evaluation (hybrid: rules + MiniLM, the best measured; rules;
    embedding; llm). The respond stage picks helpful SFT answers with the rules alone."""
    cross_check: str | None = "embedding"
    """A second refusal detector every reply is also labelled by (default: the MiniLM embedding
    detector, which plays no part in producing training labels; the rules detector picks the
    respond stage's helpful SFT answers). None: off."""
    max_new_tokens: int = Field(128, ge=8)
    """Token limit of evaluated responses."""
    examples: int = Field(3, ge=0)
    """Example responses per model and suite kind in the report."""
    shifts: list[str] = []
    """Shift families for the Alignment Stability Index (e.g. roleplay, encoding; see
    ``cai eval --help``); empty: no ASI."""
    shift_model: str | None = None
    """Model spec that paraphrases and translates prompts for the ASI (default: the policy)."""
    calibration_labels: str | None = None
    """Human label file (hh-rlhf, pairwise or harm labels): the judge is calibrated on it and
    report.html shows the table next to its win rates (None: no calibration)."""
    calibration_limit: int | None = Field(None, ge=1)
    """Label rows used for calibration (None: all)."""


class RedteamStage(_Section):
    """Automated red-teaming of the policy (before) and the trained model (after); off by default.

    Successful attacks on either are written to ``data/redteam_failures.jsonl``, a prompt set the
    next round reads as ``prompts.red_team: [run:RUN_DIR/redteam]``."""

    enabled: bool = False
    """Run the stage (otherwise it is skipped)."""
    budget: int = Field(80, ge=1)
    """Model calls per red-teamed model (attacker + target + judge requests)."""
    batch_size: int = Field(8, ge=1)
    """Candidate prompts per generation."""
    styles: list[str] | None = None
    """Attack style ids (None: all bundled styles)."""
    categories: list[str] | None = None
    """Risk category ids (None: all bundled categories)."""
    seeds: str = "builtin:harmful"
    """Prompt set whose train split seeds each category."""
    judge: str | None = None
    """Model spec of an optional harm judge (None: the refusal detector alone decides)."""
    embedder: str = "minilm"
    """Embedder for near-duplicate rejection and diversity (minilm or hash)."""
    similarity: float = Field(0.9, gt=0, le=1)
    """Cosine similarity that makes a candidate a near-duplicate."""
    max_new_tokens: int = Field(128, ge=8)
    """Token limit of the target's replies."""
    after: str | None = None
    """Model spec red-teamed after training (None: the trained dpo, else sft, model)."""


class Stages(_Section):
    """Per-stage settings."""

    train_critic: EvaluatorTraining = EvaluatorTraining(limit=144)
    """The critic trained on the critique-and-revision demonstrations (models/critic); the
    critique stage then sends it the compact template with no worked examples."""
    train_feedback: FeedbackTraining = FeedbackTraining()
    """The feedback model trained on the comparison demonstrations (models/feedback), a reward
    probe by default; it replaces ``models.feedback[0]`` in calibrate and feedback."""
    critique: CritiqueStage = CritiqueStage()
    """SL-CAI."""
    pretrain: PretrainStage = PretrainStage()
    """Constitutional pre-training on control-token-tagged text (off by default)."""
    sft: SFTStage = SFTStage()
    """Supervised fine-tuning."""
    pairs: PairsStage = PairsStage()
    """Response pairs."""
    calibrate: CalibrateStage = CalibrateStage()
    """Judge calibration, before the feedback stage uses any judge."""
    feedback: FeedbackStage = FeedbackStage()
    """AI feedback."""
    dpo: DPOStage = DPOStage()
    """Preference training."""
    redteam: RedteamStage = RedteamStage()
    """Red-teaming before and after training."""
    evaluate: EvaluateStage = EvaluateStage()
    """Evaluation."""

    @model_validator(mode="after")
    def _sft_base(self) -> Stages:
        if self.sft.base == "pretrain" and not self.pretrain.enabled:
            raise ValueError("sft.base is pretrain: turn the stage on (pretrain.enabled: true)")
        return self


class RaySettings(_Section):
    """Distributed generation: every generation stage shards its model calls over Ray actors."""

    enabled: bool = False
    """Run respond, critique, pairs, feedback, redteam and evaluate calls on Ray."""
    address: str | None = None
    """Ray cluster address (``auto``, ``ray://HOST:10001``); None starts a local instance."""
    workers: int = Field(2, ge=1)
    """Actors per model, each holding its own copy of the model."""
    cpus_per_worker: float = Field(1.0, gt=0)
    """CPUs Ray reserves for each actor."""
    gpus_per_worker: float = Field(0.0, ge=0)
    """GPUs Ray reserves for each actor (transformers backends then run on cuda)."""
    mode: Literal["data", "actors"] = "data"
    """data: each model call is a Ray Data map_batches job over an actor pool; actors: actors
    keep their model loaded between calls (less overhead per call)."""


class Recipe(_Section):
    """A whole Constitutional AI run."""

    version: Literal[1] = 1
    """Recipe format version."""
    name: str = "default"
    """Name shown in the report."""
    seed: int = 0
    """Seed for sampling principles, prompts and training."""
    constitution: str | None = None
    """Constitution file or bundled pack name (None: the default pack)."""
    models: Models = Models()
    """Model spec per role."""
    prompts: Prompts = Prompts()
    """Prompt sets."""
    generation: Generation = Generation()
    """Generation settings."""
    stages: Stages = Stages()
    """Per-stage settings."""
    ray: RaySettings = RaySettings()
    """Distributed generation on Ray (off by default; ``cai run --ray`` turns it on)."""
    oversight: str | None = None
    """Oversight config YAML (see examples/oversight.yaml); its checkpoints make sft/dpo wait
    for enough human reviews (None: no checkpoints)."""


def recipe_fields(model: type[BaseModel] = Recipe, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every field, for ``cai run --help``."""
    rows: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += recipe_fields(ann, key + ".")
        else:
            rows.append((key, repr(info.default), info.description or ""))
    return rows


def load_recipe(path: str | Path | None) -> Recipe:
    """Read a recipe file (None: all defaults). Errors are one line, ``FILE:LINE: key: msg``."""
    if path is None:
        return Recipe()
    return load_yaml_model(path, Recipe, root="recipe")
