"""One red-team run end to end: search, then summary.json, failures.jsonl and report.html.

Owns: the order of those steps and the files of an output directory; replaying a set of
attacks against another model (the fair "after training" comparison on fixed prompts).
Must not know: the CLI or ``cai run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cai.backends import Backend
from cai.errors import InputError
from cai.records import GenerationRequest, PromptRecord, SamplingParams
from cai.redteam._records import Archive, RedteamConfig, RedteamSummary
from cai.redteam._report import render_report
from cai.redteam._search import ProgressFn, RedteamModels, search
from cai.redteam._summary import export_failures
from cai.redteam._summary import summarize as _summarize
from cai.scoring import Rate, get_detector, proportion
from cai.store import write_json, write_text_atomic


@dataclass(frozen=True, slots=True)
class RedteamResult:
    """What a run left in its output directory."""

    out_dir: Path
    archive: Archive
    summary: RedteamSummary
    failures: Path
    report: Path


def run_redteam(
    models: RedteamModels,
    config: RedteamConfig,
    out_dir: str | Path,
    *,
    max_generations: int | None = None,
    on_progress: ProgressFn | None = None,
) -> RedteamResult:
    """Search (resuming from ``out_dir``), then write summary.json, failures.jsonl, report.html."""
    out = Path(out_dir)
    archive = search(models, config, out, max_generations=max_generations, on_progress=on_progress)
    summary = _summarize(out, archive)
    write_json(out / "summary.json", summary)
    failures = export_failures(out, archive)
    report = out / "report.html"
    write_text_atomic(report, render_report(summary))
    return RedteamResult(out, archive, summary, failures, report)


def load_summary(out_dir: str | Path) -> RedteamSummary:
    """Read summary.json of a finished run."""
    path = Path(out_dir) / "summary.json"
    if not path.exists():
        raise InputError(f"{path}: no such file (has the red-team run finished?)")
    return RedteamSummary.model_validate_json(path.read_bytes())


def replay(
    target: Backend,
    prompts: Sequence[PromptRecord],
    *,
    detector: str = "rules",
    success_labels: Sequence[str] = ("full_compliance",),
    max_new_tokens: int = 128,
    seed: int = 0,
) -> Rate:
    """Share of ``prompts`` (one message each) the target's reply counts as a success on;
    failed and undetermined replies are left out of n."""
    if not prompts:
        return Rate.empty()
    params = SamplingParams(max_new_tokens=max_new_tokens, seed=seed)
    outs = target.generate([GenerationRequest.user(p.text) for p in prompts], params)
    ok = [(p, g.text) for p, g in zip(prompts, outs, strict=True) if g.finish_reason != "error"]
    dets = get_detector(detector).detect([p.text for p, _ in ok], [t for _, t in ok])
    scored = [d for d in dets if d.label != "undetermined"]
    return proportion(sum(d.label in success_labels for d in scored), len(scored))
