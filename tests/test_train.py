"""cai.train on a tiny random Llama (``tiny_model`` in conftest.py: SmolLM2's vocabulary): each
method changes the parameters, writes train_meta.json and loads back; the embedded model runs in
one ``slow`` test."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from click.testing import CliRunner

from cai.backends import load_backend
from cai.cli import cli
from cai.errors import InputError
from cai.records import GenerationRequest, SamplingParams, SFTExample
from cai.train import META, TrainResult, read_result
from cai.train._data import mix_sft

FAST = {"max_length": 64, "per_device_train_batch_size": 2, "logging_steps": 1}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _chat(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _sft_rows(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "messages": _chat(f"Question {prefix}{i}?", f"Answer {i}.")}
        for i in range(n)
    ]


def _preference(i: int, soft_label: float, margin: float) -> dict[str, Any]:
    return {
        "id": f"p{i}",
        "prompt": [{"role": "user", "content": f"How do I pick lock {i}?"}],
        "chosen": [{"role": "assistant", "content": "Call a locksmith; I can't help break in."}],
        "rejected": [{"role": "assistant", "content": f"Insert a pick into lock {i}."}],
        "soft_label": soft_label,
        "margin": margin,
        "principle_ids": ["harm.crime"],
        "models": {"policy": "mock", "feedback": "mock"},
        "template_version": "feedback/1",
        "seed": 0,
    }


def _tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _generates(spec: str) -> None:
    backend = load_backend(spec, dtype="float32")
    try:
        (out,) = backend.generate(
            [GenerationRequest.user("Hello?")], SamplingParams(max_new_tokens=4)
        )
        assert out.finish_reason != "error", out.error
        assert out.completion_tokens > 0
    finally:
        backend.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-data")
    prefs = [_preference(i, soft_label=0.6 + 0.05 * i, margin=1.0 + 0.1 * i) for i in range(6)]
    return {
        "sft": _write_jsonl(root / "sft.jsonl", _sft_rows("r", 6)),
        "helpful": _write_jsonl(root / "helpful.jsonl", _sft_rows("h", 20)),
        "prefs": _write_jsonl(root / "preferences.jsonl", prefs),
    }


@pytest.fixture(scope="module")
def sft_lora(
    tiny_model: Path, data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> TrainResult:
    from cai.train import CaiSFTConfig, train_sft

    out = tmp_path_factory.mktemp("runs") / "sft"
    cfg = CaiSFTConfig(max_steps=2, helpful_ratio=0.5, **FAST)
    return train_sft(f"hf:{tiny_model}", [data["sft"]], [data["helpful"]], out, cfg)


def test_sft_lora_trains_the_adapter_and_loads_back(
    sft_lora: TrainResult, tiny_model: Path
) -> None:
    out = Path(sft_lora.out_dir)
    lora_b = {k: v for k, v in _tensors(out / "adapter_model.safetensors").items() if "lora_B" in k}
    assert lora_b, "no LoRA weights saved"
    # PEFT starts every lora_B at zero: any non-zero value is a training update.
    assert all(bool(t.abs().sum() > 0) for t in lora_b.values())
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_model.resolve())
    meta = read_result(out)
    assert meta == sft_lora
    assert (meta.method, meta.saved, meta.steps) == ("sft", "adapter", 2)
    assert (meta.n_helpful, meta.n_examples) == (3, 9)  # round(0.5 * 6) helpful + 6 revisions
    assert [Path(d.path).name for d in meta.data] == ["sft.jsonl", "helpful.jsonl"]
    assert meta.final_loss is not None and meta.config["lora"] is True
    _generates(sft_lora.spec)


def test_full_sft_changes_the_base_weights(
    tiny_model: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    from cai.train import CaiSFTConfig, train_sft

    cfg = CaiSFTConfig(max_steps=1, lora=False, learning_rate=1e-3, helpful_ratio=0.0, **FAST)
    result = train_sft(f"hf:{tiny_model}", [data["sft"]], [], tmp_path / "full", cfg)
    assert (result.saved, result.n_helpful, result.n_examples) == ("full", 0, 6)
    before = _tensors(tiny_model / "model.safetensors")
    after = _tensors(tmp_path / "full" / "model.safetensors")
    changed = [k for k in before if not bool((before[k] == after[k]).all())]
    assert "model.layers.0.self_attn.q_proj.weight" in changed
    _generates(f"run:{tmp_path / 'full'}")


def test_dpo_continues_the_sft_adapter_with_soft_labels(
    sft_lora: TrainResult, data: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    from cai.train import CaiDPOConfig, train_dpo

    out = tmp_path / "dpo"
    result = train_dpo(sft_lora.spec, [data["prefs"]], out, CaiDPOConfig(max_steps=2, **FAST))
    soft = [0.6 + 0.05 * i for i in range(6)]
    eps = sum(1 - p for p in soft) / len(soft)
    # Step 1: the policy equals its reference (a frozen copy of the SFT adapter), so the EXO loss
    # is KL([0.5, 0.5] || [1 - eps, eps]) exactly: the soft labels reached the loss.
    kl = 0.5 * math.log(0.5 / (1 - eps)) + 0.5 * math.log(0.5 / eps)
    assert result.losses[0] == pytest.approx(kl, rel=1e-4)
    # What the trainer itself ran with (TRL saves its arguments beside the model).
    args = torch.load(out / "training_args.bin", weights_only=False)
    assert args.loss_type == ["exo_pair"]
    assert args.label_smoothing == pytest.approx(eps)
    assert result.config["label_smoothing"] == pytest.approx(eps)
    assert result.base_adapter == sft_lora.out_dir
    # One adapter (the frozen reference copy is not saved), on the same base as the SFT adapter.
    assert not (out / "ref").exists()
    sft_cfg = json.loads((Path(sft_lora.out_dir) / "adapter_config.json").read_text())
    dpo_cfg = json.loads((out / "adapter_config.json").read_text())
    assert dpo_cfg["base_model_name_or_path"] == sft_cfg["base_model_name_or_path"]
    before = _tensors(Path(sft_lora.out_dir) / "adapter_model.safetensors")
    after = _tensors(out / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not bool((before[k] == after[k]).all()) for k in before)
    _generates(result.spec)


def test_full_dpo_changes_the_base_weights(
    tiny_model: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    from cai.train import CaiDPOConfig, train_dpo

    cfg = CaiDPOConfig(max_steps=1, lora=False, learning_rate=1e-3, **FAST)
    result = train_dpo(f"hf:{tiny_model}", [data["prefs"]], tmp_path / "dpo", cfg)
    assert result.saved == "full"
    before = _tensors(tiny_model / "model.safetensors")
    after = _tensors(tmp_path / "dpo" / "model.safetensors")
    key = "model.layers.1.mlp.up_proj.weight"
    assert not bool((before[key] == after[key]).all())


def test_dpo_refuses_soft_labels_with_another_loss(data: dict[str, Path], tmp_path: Path) -> None:
    from cai.train import CaiDPOConfig, train_dpo

    cfg = CaiDPOConfig(loss_type=["ipo"], **FAST)
    with pytest.raises(InputError, match="soft_labels=False"):
        train_dpo("hf:/nowhere", [data["prefs"]], tmp_path / "x", cfg)
    with pytest.raises(InputError, match="no preference pairs"):
        train_dpo("hf:/nowhere", [data["prefs"]], tmp_path / "x", CaiDPOConfig(min_soft_label=0.99))


def test_reward_model_trains_with_the_margin(
    tiny_model: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    from cai.train import CaiRewardConfig, load_reward_model, train_reward

    out = tmp_path / "rm"
    result = train_reward(
        f"hf:{tiny_model}", [data["prefs"]], out, CaiRewardConfig(max_steps=2, **FAST)
    )
    saved = _tensors(out / "adapter_model.safetensors")
    assert any("score" in k for k in saved), "the score head is saved with the adapter"
    assert all(bool(v.abs().sum() > 0) for k, v in saved.items() if "lora_B" in k)
    # Rewards start near equal, so the loss is about -log sigmoid(-margin) >= 0.97 for margins
    # >= 1.0, well above log 2 (0.69), the loss without a margin column.
    assert result.final_loss is not None and result.final_loss > 0.9
    assert result.config["margin_scale"] == 1.0
    model, tokenizer = load_reward_model(out)
    batch = tokenizer(["a safe answer", "another"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 1)


def test_mix_is_seeded_and_keeps_the_ratio() -> None:
    revisions = [SFTExample.model_validate(r) for r in _sft_rows("r", 10)]
    helpful = [SFTExample.model_validate(r) for r in _sft_rows("h", 50)]
    mix = mix_sft(revisions, helpful, 1.5, seed=7)
    assert (mix.n_revision, mix.n_helpful, len(mix.examples)) == (10, 15, 25)
    assert sum(ex.id.startswith("h") for ex in mix.examples) == 15
    assert [e.id for e in mix_sft(revisions, helpful, 1.5, seed=7).examples] == [
        e.id for e in mix.examples
    ]
    assert mix_sft(revisions, helpful, 1.5, seed=8).examples != mix.examples
    assert mix_sft(revisions, helpful[:4], 1.0, seed=7).n_helpful == 4  # never duplicated


def test_bad_data_names_file_and_line(tmp_path: Path) -> None:
    from cai.train import train_dpo, train_sft

    bad = tmp_path / "sft.jsonl"
    good = json.dumps(_sft_rows("r", 1)[0])
    bad.write_text(good + "\n\n" + json.dumps({"id": "x", "messages": "nope"}) + "\n")
    with pytest.raises(InputError, match=rf"{bad}:3: messages"):
        train_sft("hf:/nowhere", [bad], [], tmp_path / "out")
    no_answer = {"id": "y", "messages": [{"role": "user", "content": "hi"}]}
    bad.write_text(good + "\n" + json.dumps(no_answer) + "\n")
    with pytest.raises(InputError, match=rf"{bad}:2: .*assistant turn"):
        train_sft("hf:/nowhere", [bad], [], tmp_path / "out")
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("{not json\n")
    with pytest.raises(InputError, match=rf"{prefs}:1: not valid JSON"):
        train_dpo("hf:/nowhere", [prefs], tmp_path / "out")


def test_out_dir_with_other_files_is_refused(data: dict[str, Path], tmp_path: Path) -> None:
    from cai.train import train_sft

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an earlier training output"):
        train_sft("hf:/nowhere", [data["sft"]], [], tmp_path)


def test_cli_train_sft(tiny_model: Path, data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli-sft"
    args = ["train", "sft", "--base", f"hf:{tiny_model}", "--data", str(data["sft"])]
    args += ["--out", str(out), "--max-steps", "1", "--max-length", "64", "--batch-size", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"run:{out.resolve()}")
    assert (out / META).is_file() and read_result(out).steps == 1


def test_cli_train_bad_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"id": 1}\n')
    args = ["train", "dpo", "--data", str(bad), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert f"{bad}:1" in result.output


def test_import_cai_train_does_not_import_torch() -> None:
    code = (
        "import sys, cai.train\n"
        "from cai.train import TrainResult, read_result\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_embedded_sft_lora_loads_back(data: dict[str, Path], tmp_path: Path) -> None:
    from cai.train import CaiSFTConfig, train_sft

    sft = _write_jsonl(tmp_path / "sft.jsonl", _sft_rows("r", 4))
    cfg = CaiSFTConfig(
        max_steps=2, helpful_ratio=0.0, max_length=128, per_device_train_batch_size=2
    )
    result = train_sft("embedded", [sft], [], tmp_path / "sft", cfg)
    assert (result.steps, result.n_examples, result.saved) == (2, 4, "adapter")
    from cai.backends._embedded import embedded_model_dir

    base = json.loads((tmp_path / "sft" / "adapter_config.json").read_text())
    assert base["base_model_name_or_path"] == str(embedded_model_dir().resolve())
    _generates(result.spec)


# -- multi-process presets and the accelerate launcher -------------------------------------


def test_distributed_presets_name_real_configs() -> None:
    from cai.errors import InputError
    from cai.train import DISTRIBUTED, deepspeed_config, distributed_args

    assert distributed_args("none") == {}
    for stage, path in ((2, deepspeed_config(2)), (3, deepspeed_config(3))):
        assert json.loads(path.read_text())["zero_optimization"]["stage"] == stage
        assert distributed_args(f"zero{stage}") == {"deepspeed": str(path)}
    assert distributed_args("fsdp")["fsdp"] == "full_shard auto_wrap"
    assert set(DISTRIBUTED) == {"none", "ddp", "fsdp", "zero2", "zero3"}
    with pytest.raises(InputError, match="unknown distributed preset"):
        distributed_args("zero9")


def test_recipe_presets_reach_the_trainer_args() -> None:
    from cai.pipeline import Recipe

    stages = {"sft": {"distributed": "zero3", "num_processes": 8}}
    recipe = Recipe.model_validate({"stages": stages})
    args = recipe.stages.sft.trainer_args("/tmp/out", 0)
    assert args["deepspeed"].endswith("zero3.json")
    assert recipe.stages.sft.num_processes == 8
    # DPO accumulates small batches by default (an effective batch of 4, less memory a pass).
    dpo = recipe.stages.dpo.trainer_args("/tmp/out", 0)
    assert dpo["per_device_train_batch_size"] * dpo["gradient_accumulation_steps"] == 4
    assert dpo["per_device_train_batch_size"] == 2 and args["gradient_accumulation_steps"] == 1


def test_accelerate_launch_runs_a_training_job(
    tiny_model: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    """The launcher path end to end, on one CPU process (a GPU host passes N > 1)."""
    from cai.train import TrainJob, launch, launch_command

    out = tmp_path / "sft"
    job = TrainJob(
        method="sft",
        base_model=f"hf:{tiny_model}",
        data=[str(data["sft"])],
        out_dir=str(out),
        config={"max_steps": 1, **FAST},
    )
    cmd = launch_command(tmp_path / "job.json", 4, "fsdp.yaml")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[-3:] == ["-m", "cai.train.launch", str(tmp_path / "job.json")]
    result = launch(job, 1)
    assert result.steps == 1 and result.method == "sft"
    assert (out / "adapter_config.json").is_file()
    _generates(f"run:{out}")
