"""RLAIF labelling: ask each feedback model which reply is better, in both orders, batched.

Owns: principle sampling per (pair, k), the comparison requests for a batch of pairs (one
``score`` call per order and model, plus one ``generate`` call per order and model for chain of
thought), combining comparisons into a judgement and turning a judgement into a
``PreferenceRecord``.
Must not know: files, resumption or the CLI; where pairs come from.

A failed request drops only its own pair, which is reported and retried on the next run. When a
batched ``score`` call raises ``BackendError``, its requests are asked one at a time, so only the
pairs whose own request fails are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cai.backends import Backend
from cai.constitution import Constitution, Principle, PrincipleSampler, Router, resolve
from cai.errors import InputError
from cai.feedback._records import Comparison, PairJudgement, decide
from cai.feedback._templates import (
    answer_request,
    compare_messages,
    compare_template,
    reasoning_request,
)
from cai.records import (
    Failure,
    Message,
    PairRecord,
    PreferenceRecord,
    SamplingParams,
)
from cai.scoring import score_each

Progress = Callable[[int, int], None]
"""Called after each model call with (requests finished, tokens generated)."""


@dataclass(frozen=True, slots=True)
class FeedbackConfig:
    """Settings of preference labelling."""

    principles_per_pair: int = 1
    """Principles asked per pair (more than one: an ensemble, combined by the mean)."""
    seed: int = 0
    """Seed of the principle sampling."""
    cot: bool = False
    """Generate a short chain of thought before scoring the answer letter."""
    few_shot: int = 0
    """Worked examples from the constitution shown before the question."""
    tie_threshold: float = 0.5
    """Orders that pick different replies and differ by more than this are a tie."""
    min_confidence: float = 0.05
    """A soft label closer than this to 0.5 is a tie."""
    chunk_size: int = 32
    """Pairs per batch in the resumable stage."""
    reasoning: SamplingParams = field(
        default_factory=lambda: SamplingParams(max_new_tokens=128, stop=("better response is",))
    )
    """Sampling of the chain of thought (stops before the model states its answer)."""
    router: Router | None = None
    """Context/risk router: each pair is compared only under the principles its prompt's
    route admits (layers by topic and risk, tier priority), as in the SL-CAI stage."""

    def __post_init__(self) -> None:
        if self.principles_per_pair < 1:
            raise InputError(
                f"principles_per_pair must be at least 1, got {self.principles_per_pair}"
            )
        if not 0.0 <= self.tie_threshold <= 1.0:
            raise InputError(f"tie_threshold must be in [0, 1], got {self.tie_threshold}")
        if not 0.0 <= self.min_confidence <= 0.5:
            raise InputError(f"min_confidence must be in [0, 0.5], got {self.min_confidence}")
        if self.few_shot < 0 or self.chunk_size < 1:
            raise InputError("few_shot must be 0 or more and chunk_size at least 1")


@dataclass(slots=True)
class FeedbackResult:
    """What ``label_preferences`` concluded about a batch of pairs."""

    preferences: list[PreferenceRecord]
    """Training records, one per preferred pair."""
    judgements: list[PairJudgement]
    """Full trace of every judged pair, ties included."""
    identical: list[str]
    """Ids of pairs skipped because both replies are the same text."""
    failures: list[Failure]
    """Pairs whose model calls failed (not judged)."""

    @property
    def ties(self) -> list[PairJudgement]:
        """Judged pairs kept out of the training file."""
        return [j for j in self.judgements if j.outcome == "tie"]


def is_identical(pair: PairRecord) -> bool:
    """Both replies are the same text after stripping: nothing to compare."""
    return pair.response_a.strip() == pair.response_b.strip()


def choose_principles(
    constitution: Constitution,
    pair: PairRecord,
    k: int,
    sampler: PrincipleSampler,
    options: Sequence[Principle] | None = None,
) -> list[Principle]:
    """Up to ``k`` distinct principles from ``options`` (default: every principle applicable to
    the prompt's kind); draw j depends only on (seed, pair id, j)."""
    if options is None:
        options = constitution.applicable(kind=pair.prompt.kind)
    chosen: list[Principle] = []
    for j in range(min(k, len(options)) or 1):
        left = [p for p in options if p not in chosen]
        chosen.append(sampler.sample(left, pair.id, j))
    return chosen


Chat = tuple[Message, ...]
Answer = tuple[tuple[float, float], tuple[float, float], tuple[str, str] | None]
"""One comparison's letter scores in order 1 and order 2, and its chain of thought if any."""


def label_preferences(
    pairs: Sequence[PairRecord],
    constitution: Constitution,
    feedback: Sequence[Backend],
    config: FeedbackConfig | None = None,
    *,
    on_progress: Progress | None = None,
) -> FeedbackResult:
    """Judge every pair with every feedback model under its sampled principles, both orders."""
    cfg = config or FeedbackConfig()
    specs = [b.spec for b in feedback]
    if not specs or len(set(specs)) != len(specs):
        raise InputError(f"give one or more distinct feedback models, got {specs}")
    todo = [p for p in pairs if not is_identical(p)]
    sampler = PrincipleSampler(cfg.seed)
    examples = constitution.few_shot[: cfg.few_shot]
    jobs: list[tuple[int, Principle, Chat, Chat]] = []  # (pair index, principle, order 1, order 2)
    routed = _routed_options(constitution, todo, cfg.router)
    for i, p in enumerate(todo):
        options = routed[i] if routed else None
        for pr in choose_principles(constitution, p, cfg.principles_per_pair, sampler, options):
            text, a, b = p.prompt.text, p.response_a, p.response_b
            first = compare_messages(constitution, pr, text, a, b, examples)
            second = compare_messages(constitution, pr, text, b, a, examples)
            jobs.append((i, pr, first, second))
    failed: dict[int, Failure] = {}
    found: dict[int, list[Comparison]] = {i: [] for i in range(len(todo))}
    for backend in feedback:
        live = [job for job in jobs if job[0] not in failed]
        answers, errors = _ask(backend, [(j[2], j[3]) for j in live], cfg, on_progress)
        for n, (i, pr, _, _) in enumerate(live):
            error = errors[n]
            if error is not None:
                failed.setdefault(i, Failure(todo[i].id, error[0], error[1] or "error"))
                continue
            order1, order2, reasoning = answers[n]
            found[i].append(
                Comparison(
                    principle_id=pr.id,
                    model=backend.spec,
                    order1=order1,
                    order2=order2,
                    reasoning=reasoning,
                )
            )
    judgements = [
        judge(p, found[i], constitution, cfg) for i, p in enumerate(todo) if i not in failed
    ]
    preferences = [preference(j, specs) for j in judgements if j.outcome == "preferred"]
    identical = [p.id for p in pairs if is_identical(p)]
    return FeedbackResult(preferences, judgements, identical, list(failed.values()))


def _routed_options(
    constitution: Constitution, pairs: Sequence[PairRecord], router: Router | None
) -> list[list[Principle]]:
    """Per pair, the principles its prompt's route admits (empty list: no router)."""
    if router is None or not pairs:
        return []
    routes = router.route([p.prompt.text for p in pairs])
    out = []
    for p, route in zip(pairs, routes, strict=True):
        topics = router.spec.expand(route.topics)
        options, _ = resolve(constitution, topics, route.risk, kind=p.prompt.kind)
        out.append(list(options) or constitution.applicable(kind=p.prompt.kind))
    return out


def _ask(
    backend: Backend, chats: list[tuple[Chat, Chat]], cfg: FeedbackConfig, progress: Progress | None
) -> tuple[list[Answer], list[tuple[str, str] | None]]:
    """Both orders of every chat on one model: per chat an answer, or (step, error) on failure.

    One ``generate`` call per order for the chains of thought, one ``score`` call per order;
    a chat whose chain of thought failed is not scored.
    """
    errors: list[tuple[str, str] | None] = [None] * len(chats)
    scores = [[(0.0, 0.0)] * len(chats) for _ in (0, 1)]
    thoughts = [[""] * len(chats) for _ in (0, 1)]
    for order in (0, 1):
        if cfg.cot and chats:
            gens = backend.generate([reasoning_request(c[order]) for c in chats], cfg.reasoning)
            if progress:
                progress(len(chats), sum(g.completion_tokens for g in gens if not g.cached))
            for n, g in enumerate(gens):
                if g.finish_reason == "error" and errors[n] is None:
                    errors[n] = (f"reasoning order {order + 1} ({backend.spec})", g.error or "")
                thoughts[order][n] = g.text.strip()
        live = [n for n in range(len(chats)) if errors[n] is None]
        reqs = [
            answer_request(chats[n][order], thoughts[order][n] if cfg.cot else None) for n in live
        ]
        got = score_each(backend, reqs)
        if progress and reqs:
            progress(len(reqs), 0)
        for n, s in zip(live, got, strict=True):
            if isinstance(s, str):
                errors[n] = (f"score order {order + 1} ({backend.spec})", s)
            else:
                scores[order][n] = (s[0], s[1])
    answers: list[Answer] = [
        (scores[0][n], scores[1][n], (thoughts[0][n], thoughts[1][n]) if cfg.cot else None)
        for n in range(len(chats))
    ]
    return answers, errors


def judge(
    pair: PairRecord, comparisons: list[Comparison], constitution: Constitution, cfg: FeedbackConfig
) -> PairJudgement:
    """Combine one pair's comparisons (mean over principles and models, both orders)."""
    p1, p2, outcome, reason = decide(comparisons, cfg.tie_threshold, cfg.min_confidence)
    return PairJudgement(
        id=pair.id,
        pair=pair,
        comparisons=comparisons,
        p_first=p1,
        p_second=p2,
        soft_label_a=(p1 + p2) / 2,
        margin_a=sum(c.margin_a for c in comparisons) / len(comparisons),
        outcome=outcome,
        tie_reason=reason,
        template_version=compare_template().id,
        constitution=constitution.label(),
        seed=cfg.seed,
    )


def preference(j: PairJudgement, feedback_specs: Sequence[str]) -> PreferenceRecord:
    """The training record of a preferred judgement, chosen reply first."""
    a_wins = j.soft_label_a > 0.5 or (j.soft_label_a == 0.5 and j.margin_a >= 0)
    win, lose = (j.pair.response_a, j.pair.response_b)[:: 1 if a_wins else -1]
    return PreferenceRecord(
        id=j.id,
        prompt=[Message(role="user", content=j.pair.prompt.text)],
        chosen=[Message(role="assistant", content=win)],
        rejected=[Message(role="assistant", content=lose)],
        soft_label=j.soft_label_a if a_wins else 1 - j.soft_label_a,
        margin=j.margin_a if a_wins else -j.margin_a,
        principle_ids=list(dict.fromkeys(c.principle_id for c in j.comparisons)),
        models={
            "policy": j.pair.models.get("policy", "unknown"),
            "feedback": ",".join(feedback_specs),
        },
        template_version=j.template_version,
        seed=j.seed,
    )
