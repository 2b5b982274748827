"""cai.constitution: the bundled pack, the loader's FILE:LINE errors, layers, sampling, the CLI."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

import cai.constitution as constitution_api
from cai.cli import cli
from cai.constitution import (
    HELPFULNESS_TIER,
    Constitution,
    PrincipleSampler,
    load_constitution,
    load_constitution_text,
    load_default,
    pack_names,
    pack_path,
    resolve_constitution,
)
from cai.errors import InputError

# Line numbers in the comments are the ones the error tests rely on.
VALID = """\
version: 1
name: tiny
priority: [safety, helpfulness]
stakeholders:
  - {id: core, weight: 1.0, description: everyone}
layers:
  - {id: base}
  - id: med
    when: {topics: [medical]}
    min_risk: medium
principles:
  - id: p.one
    tier: safety
    layer: base
    stakeholder: core
    critique: find flaw one
    revision: fix flaw one
    compare: which is better one
  - id: p.two
    tier: helpfulness
    layer: base
    stakeholder: core
    critique: find flaw two
    revision: fix flaw two
    compare: which is better two
  - id: p.med
    tier: safety
    layer: med
    stakeholder: core
    critique: find flaw three
    revision: fix flaw three
    compare: which is better three
few_shot:
  - principle_id: p.one
    prompt: q
    response: a
    critique: c
    revision: r
"""


def edit(line: int, new: str) -> str:
    """VALID with its 1-based ``line`` replaced by ``new`` (which may hold several lines)."""
    lines = VALID.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "const.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---- the bundled pack ------------------------------------------------------------------------


def test_default_pack_loads_and_is_complete() -> None:
    c = load_default()
    assert c.name == "default"
    assert c.priority == ["safety", "ethics", "guidelines", "helpfulness"]
    ids = [p.id for p in c.principles]
    assert len(ids) == len(set(ids))
    harm = [p for p in c.principles if p.tier != HELPFULNESS_TIER]
    help_ = [p for p in c.principles if p.tier == HELPFULNESS_TIER]
    assert len({p.id for p in harm}) >= 16
    assert len([p for p in c.principles if p.id.startswith("harm.")]) >= 16
    assert len(help_) >= 4 and all(p.id.startswith("help.") for p in help_)
    assert len(c.few_shot) >= 3
    assert any(ex.principle_id.startswith("help.") for ex in c.few_shot)
    wordings = [w for p in c.principles for w in (p.critique, p.revision, p.compare)]
    assert all(w.strip() for w in wordings)
    assert len(wordings) == len(set(wordings)), "two principles share a wording"
    for p in c.principles:
        assert p.compare.rstrip().endswith("?"), p.id


def test_every_conditional_layer_has_a_principle() -> None:
    c = load_default()
    conditional = {ly.id for ly in c.layers if ly.when is not None}
    assert conditional >= {"medical", "legal", "finance", "minors"}
    assert conditional <= {p.layer for p in c.principles}


@pytest.mark.parametrize("name", pack_names())
def test_every_bundled_pack_validates(name: str) -> None:
    c = load_constitution(pack_path(name))
    assert c.principles and c.digest() == load_constitution(pack_path(name)).digest()


def test_public_api() -> None:
    for name in constitution_api.__all__:
        assert hasattr(constitution_api, name), name


def test_resolve_constitution(tmp_path: Path) -> None:
    assert resolve_constitution(None).name == "default"
    assert resolve_constitution("default").name == "default"
    assert resolve_constitution(write(tmp_path, VALID)).name == "tiny"
    with pytest.raises(InputError, match="no such file"):
        resolve_constitution(tmp_path / "missing.yaml")


def test_lookups_and_digest() -> None:
    c = load_constitution_text(VALID, "v.yaml")
    assert c.principle("p.two").tier == "helpfulness"
    assert c.tier_rank("safety") == 0 and c.tier_rank("helpfulness") == 1
    with pytest.raises(InputError, match=r"p\.nope"):
        c.principle("p.nope")
    with pytest.raises(InputError, match="unknown tier"):
        c.tier_rank("ethics")
    # The digest follows the content, not the formatting.
    reformatted = VALID.replace("  - {id: base}", "  - id: base").replace("# ", "")
    assert load_constitution_text(reformatted).digest() == c.digest()
    changed = VALID.replace("fix flaw two", "fix flaw 2")
    assert load_constitution_text(changed).digest() != c.digest()
    assert c.label() == f"tiny@{c.digest()}"


def test_references_are_checked_for_constitutions_built_in_code() -> None:
    data = load_constitution_text(VALID).model_dump()
    data["principles"][0]["tier"] = "nonsense"
    with pytest.raises(ValidationError, match="nonsense"):
        Constitution.model_validate(data)


# ---- loader errors: one line, FILE:LINE: message ---------------------------------------------

ERRORS = {
    "yaml syntax": (edit(13, "    tier: safety: oops"), 13, "invalid YAML"),
    "yaml duplicate key": (edit(13, "    tier: safety\n    tier: safety"), 14, "duplicate key"),
    "unknown key": (edit(17, "    revision: fix flaw one\n    revison: x"), 18, "'revison'"),
    "unknown top-level key": (edit(2, "name: tiny\nauthor: me"), 3, "unknown key 'author'"),
    "missing field": (edit(25, ""), 19, "missing required field 'compare'"),
    "wrong type": (edit(5, "  - {id: core, weight: heavy, description: x}"), 5, "weight"),
    "weight not positive": (edit(5, "  - {id: core, weight: 0, description: x}"), 5, "greater"),
    "topics not a list": (edit(9, "    when: {topics: medical}"), 9, "topics"),
    "bad risk": (edit(10, "    min_risk: extreme"), 10, "min_risk"),
    "wrong version": (edit(1, "version: 2"), 1, "version"),
    "duplicate principle": (edit(26, "  - id: p.one"), 26, "duplicate principle id 'p.one'"),
    "duplicate layer": (edit(8, "  - id: base"), 8, "duplicate layer id 'base'"),
    "duplicate stakeholder": (
        edit(
            5,
            "  - {id: core, weight: 1, description: a}\n  - {id: core, weight: 2, description: b}",
        ),
        6,
        "duplicate stakeholder id 'core'",
    ),
    "duplicate tier": (edit(3, "priority: [safety,\n  safety, helpfulness]"), 4, "duplicate tier"),
    "missing layer": (edit(28, "    layer: nowhere"), 28, "layer 'nowhere'"),
    "missing stakeholder": (edit(22, "    stakeholder: nobody"), 22, "stakeholder 'nobody'"),
    "tier not in priority": (edit(20, "    tier: fun"), 20, "not in priority"),
    "few-shot principle": (edit(34, "  - principle_id: p.nope"), 34, "unknown principle 'p.nope'"),
    "min_risk without when": (edit(7, "  - {id: base, min_risk: low}"), 7, "min_risk needs"),
    "not a mapping": ("- just\n- a list\n", 1, "expected a mapping"),
    "empty file": ("", 1, "empty file"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_loader_error_names_file_and_line(tmp_path: Path, case: str) -> None:
    text, line, fragment = ERRORS[case]
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_constitution(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert fragment in msg
    assert "\n" not in msg


def test_valid_text_loads() -> None:
    c = load_constitution_text(VALID, "v.yaml")
    assert [p.id for p in c.principles] == ["p.one", "p.two", "p.med"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match=r"nope\.yaml: no such file"):
        load_constitution(path)


# ---- applicable principles -------------------------------------------------------------------


def ids(principles: list[constitution_api.Principle]) -> list[str]:
    return [p.id for p in principles]


def test_conditional_layers_switch_on_by_topic_and_risk() -> None:
    c = load_constitution_text(VALID)
    assert ids(c.applicable()) == ["p.one", "p.two"]
    assert ids(c.applicable(topics=["medical"])) == ["p.one", "p.two"]  # risk low < medium
    assert ids(c.applicable(topics=["cooking"], risk="high")) == ["p.one", "p.two"]
    assert "p.med" in ids(c.applicable(topics=["medical"], risk="medium"))
    assert "p.med" in ids(c.applicable(topics={"medical", "x"}, risk="high"))
    with pytest.raises(InputError, match="unknown risk"):
        c.applicable(risk="extreme")


def test_harmful_kind_drops_the_helpfulness_tier() -> None:
    c = load_constitution_text(VALID)
    assert ids(c.applicable(kind="harmful")) == ["p.one"]
    assert ids(c.applicable(kind="borderline")) == ["p.one", "p.two"]
    default = load_default()
    harmful = default.applicable(kind="harmful")
    assert harmful and all(p.tier != HELPFULNESS_TIER for p in harmful)
    assert any(p.tier == HELPFULNESS_TIER for p in default.applicable(kind="helpful"))


def test_default_pack_layers() -> None:
    c = load_default()
    base = set(ids(c.applicable()))
    assert not base & {"medical.caution", "legal.no_false_certainty"}
    assert "medical.caution" in ids(c.applicable(topics=["medical"]))
    assert "legal.no_false_certainty" not in ids(c.applicable(topics=["legal"], risk="low"))
    assert "legal.no_false_certainty" in ids(c.applicable(topics=["legal"], risk="medium"))


# ---- sampling --------------------------------------------------------------------------------


def test_sampler_is_deterministic_and_order_independent() -> None:
    principles = load_default().principles
    records = [f"r{i}" for i in range(50)]
    forward = {
        (r, k): PrincipleSampler(7).sample(principles, r, k).id for r in records for k in (0, 1)
    }
    sampler = PrincipleSampler(7)
    backward = {
        (r, k): sampler.sample(principles, r, k).id for r in reversed(records) for k in (1, 0)
    }
    assert forward == backward
    assert len({forward[(r, 0)] for r in records}) > 1  # not stuck on one principle
    other_seed = {(r, k): PrincipleSampler(8).sample(principles, r, k).id for (r, k) in forward}
    assert other_seed != forward


def test_sampler_covers_all_principles_roughly_uniformly() -> None:
    principles = load_default().principles
    sampler = PrincipleSampler(0)
    n = 200 * len(principles)
    counts = Counter(sampler.sample(principles, f"rec-{i}", 0).id for i in range(n))
    assert set(counts) == {p.id for p in principles}
    assert min(counts.values()) > 120 and max(counts.values()) < 280


def test_sampler_rejects_empty_list() -> None:
    with pytest.raises(InputError, match="no principles"):
        PrincipleSampler(0).sample([], "r", 0)


# ---- cai constitution show -------------------------------------------------------------------


def test_show_prints_the_table() -> None:
    result = CliRunner().invoke(cli, ["constitution", "show"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("default", "harm.weapons", "help.sounds_risky", "safety > ethics", "core (1.0)"):
        assert text in result.output
    assert "few-shot examples: 4" in result.output


def test_show_a_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["constitution", "show", str(write(tmp_path, VALID))])
    assert result.exit_code == 0, result.output
    assert "p.med" in result.output and "med (topics: medical; risk ≥ medium)" in result.output


def test_show_malformed_file_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, edit(28, "    layer: nowhere"))
    result = CliRunner().invoke(cli, ["constitution", "show", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:28: "), result.output


def test_show_missing_file_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["constitution", "show", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output
