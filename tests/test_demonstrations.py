"""The bundled constitutional demonstrations: coverage, balance, split, bad input, and no overlap
with the bundled prompt sets (exact or near-duplicate)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cai.constitution import (
    demo_split,
    load_comparison_demonstrations,
    load_critique_demonstrations,
    load_default,
)
from cai.errors import InputError
from cai.store import load_prompts


def test_critiques_cover_every_principle_of_the_default_pack() -> None:
    c = load_default()
    demos = load_critique_demonstrations(constitution=c)
    assert len(demos) >= 400 and len({d.id for d in demos}) == len(demos)
    assert {d.principle_id for d in demos} == {p.id for p in c.principles}
    assert set(Counter(d.category for d in demos)) == {"harmful", "lookalike", "ordinary"}
    splits = Counter(d.split for d in demos)
    assert 0.1 < splits["heldout"] / len(demos) < 0.3


def test_comparisons_balance_both_slots() -> None:
    c = load_default()
    demos = load_comparison_demonstrations(constitution=c)
    assert len(demos) >= 400
    labels = Counter(d.label for d in demos)
    assert abs(labels["a"] - labels["b"]) <= 1
    for cat in ("harmful", "lookalike", "ordinary"):
        per = Counter(d.label for d in demos if d.category == cat)
        assert per["a"] and abs(per["a"] - per["b"]) <= 1, (cat, per)
    compare_ids = {p.id for p in c.principles if p.compare}
    assert {d.principle_id for d in demos} <= compare_ids


def test_split_rule_is_the_sha256_of_the_id() -> None:
    from hashlib import sha256

    for d in load_critique_demonstrations()[:50]:
        want = "heldout" if int(sha256(d.id.encode()).hexdigest(), 16) % 5 == 0 else "train"
        assert d.split == want == demo_split(d.id)


def _bundled_prompts() -> list[str]:
    return [
        p.text
        for name in ("harmful", "borderline", "helpful")
        for split in ("train", "heldout")
        for p in load_prompts(f"builtin:{name}", split=split)
    ]


def test_no_demonstration_prompt_is_or_paraphrases_a_bundled_prompt() -> None:
    from cai.backends import get_embedder

    demos = [d.prompt for d in load_critique_demonstrations()]
    demos += [d.prompt for d in load_comparison_demonstrations()]
    bundled = _bundled_prompts()
    norm = {" ".join(t.lower().split()) for t in bundled}
    assert not [t for t in demos if " ".join(t.lower().split()) in norm]  # exact
    emb = get_embedder("minilm")
    sim = np.asarray(emb.embed(demos)) @ np.asarray(emb.embed(bundled)).T
    worst = int(sim.max(axis=1).argmax())
    assert sim.max() < 0.85, (demos[worst], bundled[int(sim[worst].argmax())], sim.max())


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


_OK = {"id": "x1", "principle_id": "harm.weapons", "category": "harmful", "prompt": "p",
       "draft": "d", "critique": "c", "revision": "r"}  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [_OK, {**_OK, "id": "x2", "principle_id": "harm.nope"}],
            r"d\.jsonl:2: principle 'harm\.nope'",
        ),
        ([_OK, {**_OK, "id": "x2", "revision": "  "}], r"d\.jsonl:2: empty revision"),
        ([_OK, _OK], r"d\.jsonl:2: duplicate id 'x1' \(first on line 1\)"),
        ([{**_OK, "category": "other"}], r"d\.jsonl:1: "),
    ],
)
def test_bad_demonstration_files_name_file_and_line(
    tmp_path: Path, rows: list[dict[str, object]], message: str
) -> None:
    path = _write(tmp_path / "d.jsonl", rows)
    with pytest.raises(InputError, match=message):
        load_critique_demonstrations(path, constitution=load_default())
