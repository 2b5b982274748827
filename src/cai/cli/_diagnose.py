"""``cai diagnose``: attribute a run's over-refusals to the principles its critiques cited."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from cai.backends import get_embedder
from cai.cli._common import BATCH_SIZE, CONSTITUTION, console, open_models
from cai.constitution import resolve_constitution
from cai.critique._diagnose import SafeReply, diagnose
from cai.errors import InputError
from cai.evaluate import ResponseRecord
from cai.records import SamplingParams, SLCAIRecord
from cai.store import read_jsonl, run_file

_SAFE = ("borderline", "helpful")
_REFUSED = ("full_refusal", "partial_refusal")


def _recipe(run_dir: Path) -> dict[str, object]:
    path = run_dir / "recipe.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _pick_model(records: list[ResponseRecord], name: str | None, path: Path) -> str:
    names = list(dict.fromkeys(r.model for r in records))
    if not names:
        raise InputError(f"{path}: no evaluation replies")
    if name is not None:
        if name not in names:
            raise InputError(f"{path}: no replies of model {name!r} (found {', '.join(names)})")
        return name
    return next((n for n in ("dpo", "sft") if n in names), names[-1])


@click.command("diagnose")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--model", "model_name", default=None, help="Evaluated model (default: dpo, sft, or the last)."
)
@click.option(
    "--critic",
    default=None,
    help="Model spec that suggests rewordings (default: the run's critic).",
)
@click.option(
    "--no-suggest", is_flag=True, help="Count only; do not ask the critic for rewordings."
)
@click.option(
    "--embedder", default="minilm", show_default=True, help="Embedder for nearest traces."
)
@click.option("--neighbours", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--min-similarity", type=click.FloatRange(-1, 1), default=0.5, show_default=True)
@click.option(
    "--top", type=click.IntRange(min=1), default=5, show_default=True, help="Principles to reword."
)
@CONSTITUTION
@BATCH_SIZE
def diagnose_cmd(
    run_dir: Path,
    model_name: str | None,
    critic: str | None,
    no_suggest: bool,
    embedder: str,
    neighbours: int,
    min_similarity: float,
    top: int,
    constitution_path: Path | None,
    batch_size: int,
) -> None:
    """Over-refusal diagnosis of RUN_DIR (a `cai run` directory).

    For each safe (borderline or helpful) prompt the evaluated model refused, finds the SL-CAI
    traces of the same prompt, else its nearest trace prompts, and the principles their
    critiques cited; counts false refusals per principle and asks the critic for a narrower
    wording of the most implicated ones. Writes RUN_DIR/diagnosis.json.
    """
    responses = run_dir / "responses.jsonl"
    trace = run_file(run_dir, "data/sl_cai.jsonl")
    for p in (responses, trace):
        if not p.exists():
            raise InputError(
                f"{p}: not found (run `cai run` with the critique and evaluate stages)"
            )
    records = list(read_jsonl(responses, ResponseRecord))
    model = _pick_model(records, model_name, responses)
    replies = [
        SafeReply(
            prompt_id=r.prompt_id,
            prompt=r.prompt,
            category=r.category,
            refused=r.detection.label in _REFUSED,
        )
        for r in records
        if r.model == model
        and r.kind in _SAFE
        and r.detection is not None
        and r.detection.label != "undetermined"
    ]
    traces = list(read_jsonl(trace, SLCAIRecord))
    recipe = _recipe(run_dir)
    c_src = constitution_path or recipe.get("constitution")
    constitution = resolve_constitution(str(c_src) if c_src else None)
    emb = get_embedder(embedder)
    models = recipe.get("models")
    critic_spec = critic or (str(models.get("critic")) if isinstance(models, dict) else None)
    with ExitStack() as stack:
        backend = None
        if not no_suggest:
            if not critic_spec:
                raise InputError("give --critic SPEC (the run has no recipe.json naming a critic)")
            backend = open_models(
                {"critic": critic_spec},
                run_dir / "cache.sqlite",
                batch_size=batch_size,
                stack=stack,
            )["critic"]
        result = diagnose(
            model,
            replies,
            traces,
            constitution,
            emb.embed,
            embedder=emb.name,
            critic=backend,
            params=SamplingParams(max_new_tokens=160),
            neighbours=neighbours,
            min_similarity=min_similarity,
            top=top,
        )
    out = run_dir / "diagnosis.json"
    out.write_text(result.model_dump_json(indent=2) + "\n")
    r = result.over_refusal
    lo, hi = r.ci95 or (0.0, 0.0)
    console.print(
        f"{escape(model)}: over-refusal {r.value if r.value is not None else 'n/a'} "
        f"(n={r.n}, 95% CI {lo:.3f}-{hi:.3f}); {len(result.prompts)} refused safe prompts, "
        f"{len(traces)} traces"
    )
    table = Table(title="false refusals per principle")
    for col in ("principle", "false refusals", "share of refusals [95% CI]", "suggested rewording"):
        table.add_column(col)
    for d in result.principles:
        s = d.share
        ci = (
            f"{s.value:.2f} [{s.ci95[0]:.2f}, {s.ci95[1]:.2f}]"
            if s.ci95 and s.value is not None
            else "n/a"
        )
        table.add_row(escape(d.principle_id), str(d.false_refusals), ci, escape(d.suggestion or ""))
    console.print(table)
    console.print(f"wrote {escape(str(out))}")


COMMANDS: list[click.Command] = [diagnose_cmd]
