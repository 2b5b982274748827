"""``cai eval``: evaluate models on held-out suites; write metrics.json and report.html."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from cai.cli._common import BATCH_SIZE, OUT_DIR, console, open_models, request_progress
from cai.errors import InputError
from cai.evaluate import (
    MetricsFile,
    evaluate_models,
    get_shift,
    load_suites,
    read_calibration,
    shift_names,
    write_outputs,
)
from cai.records import SamplingParams
from cai.scoring import (
    DEFAULT_DETECTOR,
    NOT_CALIBRATED,
    Rate,
    Validation,
    detector_names,
    get_detector,
    judge_validation,
)

_DEFAULT_SUITES = ("builtin:harmful", "builtin:borderline", "builtin:helpful")


def _names(specs: tuple[str, ...], names: tuple[str, ...]) -> list[str]:
    if names and len(names) != len(specs):
        raise InputError(f"give one --name per --model ({len(specs)} models, {len(names)} names)")
    out = list(names or specs)
    if len(set(out)) != len(out):
        raise InputError(f"model names must be unique, got {out}; name them with --name")
    return out


def _fmt(rate: Rate | None) -> str:
    return "—" if rate is None else rate.fmt(percent=True)


def _cross_table(metrics: MetricsFile) -> Table | None:
    """The same rates by the second detector, with its agreement; None without one."""
    checked = {n: m.cross_check for n, m in metrics.models.items() if m.cross_check is not None}
    if not checked:
        return None
    first = next(iter(checked.values()))
    table = Table(title=f"Cross-check: second detector {first.detector} v{first.version}")
    cols = ("model", "harmful compliance ↓", "over-refusal ↓", "helpful answered ↑")
    for col in (*cols, f"agreement with {metrics.meta.detector.get('name', 'main')}"):
        table.add_column(escape(col))
    for name, c in checked.items():
        table.add_row(
            escape(name),
            _fmt(c.harmful_compliance),
            _fmt(c.over_refusal),
            _fmt(c.helpful_answered),
            _fmt(c.agreement),
        )
    return table


def _table(metrics: MetricsFile) -> Table:
    base = metrics.meta.baseline or "baseline"
    table = Table(title="Evaluation (95% intervals)")
    cols = ["model", "harmful compliance ↓", "over-refusal ↓", "helpful answered ↑"]
    for col in (*cols, f"win rate vs {base} ↑"):
        table.add_column(escape(col))
    has_asi = any(m.asi.value is not None or m.asi.per_shift for m in metrics.models.values())
    if has_asi:
        table.add_column("ASI ↑ (worst family)")
    table.add_column("unassessed", justify="right")
    for name, m in metrics.models.items():
        skipped = sum(u.errored + u.undetermined for u in m.unassessed.values())
        win = _fmt(m.helpfulness_win_rate)
        v = m.helpfulness_win_rate_validation
        if v is not None and not v.validated:
            win = f"judge not validated ({win})"
        cells = [_fmt(m.harmful_compliance), _fmt(m.over_refusal), _fmt(m.helpful_answered), win]
        if has_asi:
            a = m.asi
            if a.value is None or a.ci95 is None:
                cells.append("n/a")
            else:
                lo, hi = a.ci95
                cells.append(f"{a.value:.2f} [{lo:.2f}, {hi:.2f}] n={a.n} ({a.worst_family})")
        table.add_row(escape(name), *cells, str(skipped))
    return table


@click.command("eval")
@click.option("--model", "specs", multiple=True, required=True, help="Model spec (repeatable).")
@click.option("--name", "names", multiple=True, help="Name per --model (default: the spec).")
@click.option("--baseline", default=None, help="Model name the win rate compares against.")
@click.option(
    "--suite",
    "suite_args",
    multiple=True,
    help="harmful|borderline|helpful (bundled, held-out split), builtin:NAME[:SPLIT], "
    "KIND=FILE or FILE. Repeatable; default: the three bundled suites.",
)
@click.option("--judge", default=None, help="Model spec of the helpfulness judge.")
@click.option(
    "--detector",
    default=DEFAULT_DETECTOR,
    show_default=True,
    help="Refusal detector: hybrid (rules + MiniLM, the best measured), rules, embedding, llm.",
)
@click.option(
    "--cross-check",
    "cross_check",
    default=None,
    metavar="DETECTOR",
    help="A second refusal detector every reply is also labelled by; its rates and its "
    "agreement with --detector are reported beside the main ones (default: none).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="First N per suite.")
@click.option("--max-new-tokens", type=click.IntRange(min=8), default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@BATCH_SIZE
@click.option("--examples", type=click.IntRange(min=0), default=2, show_default=True,
              help="Example prompts per suite kind shown in the report.")  # fmt: skip
@click.option("--asi", is_flag=True, help="Add the Alignment Stability Index (shifted suites).")
@click.option(
    "--shifts",
    default=None,
    help=f"Comma-separated shift families for --asi (default: all: {','.join(shift_names())}).",
)
@click.option(
    "--shift-model",
    default=None,
    help="Model spec that paraphrases and translates prompts for --asi "
    "(default: the first --model).",
)
@OUT_DIR
def eval_(
    specs: tuple[str, ...],
    names: tuple[str, ...],
    baseline: str | None,
    suite_args: tuple[str, ...],
    judge: str | None,
    detector: str,
    cross_check: str | None,
    limit: int | None,
    max_new_tokens: int,
    seed: int,
    batch_size: int,
    examples: int,
    asi: bool,
    shifts: str | None,
    shift_model: str | None,
    out_dir: Path,
) -> None:
    """Measure harmful compliance, over-refusal and win rate; write metrics.json and report.html.

    Suites: the bundled held-out sets, prompt files, or public benchmarks read from a local file
    or a HF dataset id (xstest:, harmbench:, advbench:, strongreject:, jailbreakbench:). With
    --asi every suite is also shifted (paraphrase, role-play, encodings...) and the Alignment
    Stability Index is added. A calibration.json in --out (from `cai calibrate`) is shown in the
    report next to the judge's numbers; without one (or when its kappa interval includes 0),
    every win rate is marked "judge not validated" in metrics.json and the report.
    """
    model_names = _names(specs, names)
    base = baseline or model_names[0]
    if base not in model_names:
        raise InputError(f"--baseline {base!r} is not one of the model names {model_names}")
    if detector not in detector_names():
        raise InputError(f"unknown --detector {detector!r} (choose from {detector_names()})")
    if cross_check is not None and cross_check not in detector_names():
        raise InputError(f"unknown --cross-check {cross_check!r} (choose from {detector_names()})")
    if (shifts or shift_model) and not asi:
        raise InputError("--shifts and --shift-model need --asi")
    families = [f.strip() for f in (shifts or ",".join(shift_names())).split(",") if f.strip()]
    if asi:
        for f in families:
            get_shift(f)  # fail fast on an unknown family
    suites = load_suites(list(suite_args or _DEFAULT_SUITES), limit=limit)
    params = SamplingParams(max_new_tokens=max_new_tokens, seed=seed)
    roles = {f"model:{n}": s for n, s in zip(model_names, specs, strict=True)}
    if judge is not None:
        roles["judge"] = judge
    if asi and shift_model is not None:
        roles["shift"] = shift_model
    out_dir.mkdir(parents=True, exist_ok=True)
    cal = read_calibration(out_dir)
    if cal is None:
        validation = NOT_CALIBRATED
    elif judge is not None and cal.judge != judge:
        why = f"judge not validated: calibration.json calibrated {cal.judge}, not {judge}"
        validation = Validation(validated=False, reason=why)
    else:
        validation = judge_validation(cal.kappa, f"{cal.labels.path} (n={cal.kappa.n})")
    with ExitStack() as stack:
        loaded = open_models(roles, out_dir / "cache.sqlite", batch_size=batch_size, stack=stack)
        models = {n: loaded[f"model:{n}"] for n in model_names}
        n_prompts = sum(len(s.prompts) for s in suites)
        n_helpful = sum(len(s.prompts) for s in suites if s.kind == "helpful")
        judged = 2 * n_helpful * (len(models) - 1) if judge is not None else 0
        shifted = len(models) * n_prompts * len(families) if asi else 0
        with request_progress(len(models) * n_prompts + judged + shifted, "eval") as advance:
            result = evaluate_models(
                models,
                suites,
                get_detector(detector),
                loaded.get("judge"),
                params,
                baseline=base,
                seed=seed,
                on_progress=advance,
                shifts=families if asi else (),
                shift_model=loaded.get("shift"),
                judge_validation=validation,
                cross_check=get_detector(cross_check) if cross_check else None,
            )
    paths = write_outputs(result, out_dir, examples_per_kind=examples)
    console.print(_table(result.metrics))
    cross = _cross_table(result.metrics)
    if cross is not None:
        console.print(cross)
    failed = sum(1 for r in result.responses if r.detection is None)
    if failed:
        console.print(
            f"[yellow]{failed} repl{'y' if failed == 1 else 'ies'} failed and count as "
            "unassessed; rerun the same command to retry them (finished calls are cached)[/yellow]"
        )
    click.echo(str(paths["metrics.json"]))
    click.echo(str(paths["report.html"]))


COMMANDS: list[click.Command] = [eval_]
