"""The bundled prompt sets and the prompt-set loader."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from cai.errors import InputError, MissingDependencyError
from cai.records import PromptRecord
from cai.store._prompt_sets import BUILTIN_SETS, assign_split, load_prompts, write_prompts

MINIMUMS = {"harmful": (200, 10), "helpful": (200, 10), "borderline": (100, 8)}


@pytest.fixture(scope="module")
def builtin() -> dict[str, list[PromptRecord]]:
    return {name: load_prompts(f"builtin:{name}") for name in BUILTIN_SETS}


# --- the bundled sets ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_builtin_set_size_and_categories(builtin: dict[str, list[PromptRecord]], name: str) -> None:
    records = builtin[name]
    min_count, min_categories = MINIMUMS[name]
    assert len(records) >= min_count
    assert len({r.category for r in records}) >= min_categories
    assert {r.kind for r in records} == {name}
    assert {r.source for r in records} == {f"builtin:{name}"}
    prefix = {"harmful": "harm-", "helpful": "help-", "borderline": "bord-"}[name]
    assert all(r.id.startswith(f"{prefix}{r.category}-") for r in records)


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_builtin_ids_and_texts_unique(builtin: dict[str, list[PromptRecord]], name: str) -> None:
    records = builtin[name]
    assert len({r.id for r in records}) == len(records)
    assert len({r.text for r in records}) == len(records)
    assert all(r.text.strip() == r.text and r.text for r in records)


def test_builtin_texts_unique_across_sets(builtin: dict[str, list[PromptRecord]]) -> None:
    texts = Counter(" ".join(r.text.lower().split()) for rs in builtin.values() for r in rs)
    assert [t for t, n in texts.items() if n > 1] == []


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_builtin_splits_follow_the_rule(builtin: dict[str, list[PromptRecord]], name: str) -> None:
    records = builtin[name]
    assert [r.id for r in records if r.split != assign_split(r.id)] == []
    sides: dict[str, set[str]] = {}
    for r in records:
        sides.setdefault(r.category, set()).add(r.split)
    assert {c: s for c, s in sides.items() if s != {"train", "heldout"}} == {}


def test_builtin_files_are_canonical_jsonl(repo: Path) -> None:
    """Each stored line is exactly what write_prompts would write (no stray fields or spacing)."""
    for name in BUILTIN_SETS:
        path = repo / "src" / "cai" / "data" / "prompts" / f"{name}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            assert PromptRecord.model_validate_json(line).model_dump_json() == line


def test_assign_split_is_the_documented_rule() -> None:
    import hashlib

    for i in range(200):
        rid = f"x-{i}"
        want = "heldout" if int(hashlib.sha256(rid.encode()).hexdigest(), 16) % 5 == 0 else "train"
        assert assign_split(rid) == want
    share = sum(assign_split(f"p-{i}") == "heldout" for i in range(5000)) / 5000
    assert 0.17 < share < 0.23


def test_split_and_limit_filter(builtin: dict[str, list[PromptRecord]]) -> None:
    held = load_prompts("builtin:harmful", split="heldout")
    assert held == [r for r in builtin["harmful"] if r.split == "heldout"]
    train = load_prompts("builtin:harmful", split="train", limit=7)
    assert train == [r for r in builtin["harmful"] if r.split == "train"][:7]
    assert load_prompts("builtin:helpful", limit=0) == []
    with pytest.raises(InputError, match="split must be one of train, heldout"):
        load_prompts("builtin:helpful", split="test")
    with pytest.raises(InputError, match="limit"):
        load_prompts("builtin:helpful", limit=-1)


def test_unknown_builtin() -> None:
    with pytest.raises(InputError, match="unknown builtin prompt set 'nope'"):
        load_prompts("builtin:nope")


# --- user files ----------------------------------------------------------------------------------


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_jsonl_of_records_roundtrips(tmp_path: Path) -> None:
    recs = [
        PromptRecord(id="a", text="first", category="c1", kind="harmful", split="heldout"),
        PromptRecord(id="b", text="second", category="c2"),
    ]
    path = write_prompts(tmp_path / "sub" / "set.jsonl", recs)
    assert path.exists() and not path.with_name("set.jsonl.tmp").exists()
    assert load_prompts(str(path)) == recs  # stored splits and kinds are kept as written


def test_jsonl_arbitrary_objects_default_column(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "mine.jsonl",
        [
            json.dumps({"prompt": "How do I bake bread?", "category": "cooking"}),
            "",
            json.dumps({"prompt": "Say hi", "id": 42}),
        ],
    )
    recs = load_prompts(str(path))
    assert [(r.id, r.text, r.category, r.kind) for r in recs] == [
        ("mine-1", "How do I bake bread?", "cooking", "custom"),
        ("42", "Say hi", "uncategorized", "custom"),
    ]
    assert all(r.split == assign_split(r.id) and r.source == str(path) for r in recs)


def test_jsonl_arbitrary_objects_named_columns(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "adv.jsonl",
        [
            json.dumps({"goal": "g1", "behavior": "b1", "topic": "t1"}),
            json.dumps({"goal": "g2", "behavior": "b2", "topic": "t2"}),
        ],
    )
    assert [r.text for r in load_prompts(str(path))] == ["g1", "g2"]  # goal comes before behavior
    recs = load_prompts(str(path), column="behavior", category_column="topic")
    assert [(r.text, r.category) for r in recs] == [("b1", "t1"), ("b2", "t2")]


def test_csv_with_column(tmp_path: Path) -> None:
    path = tmp_path / "set.csv"
    path.write_text(
        "\ufeffid,question,area\n"
        'q1,"What is 2+2?",math\n'
        "\n"
        'q2,"A question\nover two lines",misc\n'
        "q3,Why?,\n",
        encoding="utf-8",
    )
    recs = load_prompts(str(path), column="question", category_column="area")
    assert [(r.id, r.text, r.category) for r in recs] == [
        ("q1", "What is 2+2?", "math"),
        ("q2", "A question\nover two lines", "misc"),
        ("q3", "Why?", "uncategorized"),
    ]
    assert [r.text for r in load_prompts(str(path), split="train")] == [
        r.text for r in recs if assign_split(r.id) == "train"
    ]


def test_csv_ids_default_to_stem_and_line(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("text\nhello\nworld\n", encoding="utf-8")
    assert [r.id for r in load_prompts(str(path))] == ["plain-2", "plain-3"]


# --- errors name the file and line ---------------------------------------------------------------


def test_missing_files(tmp_path: Path) -> None:
    for name in ("gone.jsonl", "gone.csv"):
        with pytest.raises(InputError, match=r"gone\.(jsonl|csv): no such file"):
            load_prompts(str(tmp_path / name))


def test_malformed_jsonl_line(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "bad.jsonl", [json.dumps({"text": "ok"}), "", "{not json"])
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:3: not valid JSON"):
        load_prompts(str(path))


def test_invalid_record_line(tmp_path: Path) -> None:
    good = PromptRecord(id="a", text="t", category="c").model_dump_json()
    bad = json.dumps({"version": 1, "id": "b", "text": "t", "category": "c", "extra": 1})
    path = _write_lines(tmp_path / "recs.jsonl", [good, "", bad])
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:3: extra: Extra inputs"):
        load_prompts(str(path))


def test_empty_text_names_line(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "e.jsonl", [json.dumps({"text": "ok"}), json.dumps({"text": " "})]
    )
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(path))}:2: empty text in column 'text'"
    ):
        load_prompts(str(path))
    csv_path = tmp_path / "e.csv"
    csv_path.write_text("prompt,category\nfine,a\n,b\n", encoding="utf-8")
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(csv_path))}:3: empty text in column 'prompt'"
    ):
        load_prompts(str(csv_path))


def test_missing_column(tmp_path: Path) -> None:
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("body,category\nhello,a\n", encoding="utf-8")
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(csv_path))}:1: no text column \(looked for prompt"
    ):
        load_prompts(str(csv_path))
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(csv_path))}:1: no text column 'question'"
    ):
        load_prompts(str(csv_path), column="question")
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(csv_path))}:1: no category column 'topic'"
    ):
        load_prompts(str(csv_path), column="body", category_column="topic")
    header_only = tmp_path / "h.csv"
    header_only.write_text("body\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{re.escape(str(header_only))}:1: no text column 'x'"):
        load_prompts(str(header_only), column="x")
    path = _write_lines(tmp_path / "j.jsonl", [json.dumps({"q": "a"}), json.dumps({"r": "b"})])
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:2: no text column 'q'"):
        load_prompts(str(path), column="q")


def test_duplicate_ids_and_non_text(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "d.jsonl",
        [json.dumps({"id": "x", "text": "a"}), json.dumps({"id": "x", "text": "b"})],
    )
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(path))}:2: duplicate id 'x' \(first on line 1\)"
    ):
        load_prompts(str(path))
    path = _write_lines(tmp_path / "n.jsonl", [json.dumps({"text": 3})])
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(path))}:1: column 'text' is int, not text"
    ):
        load_prompts(str(path))


def test_errors_are_one_line(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "bad.jsonl", ["[1, 2]"])
    with pytest.raises(InputError) as info:
        load_prompts(str(path))
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}:1: ")


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "set.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(InputError, match="unsupported prompt file type"):
        load_prompts(str(path))


# --- Hugging Face ids ----------------------------------------------------------------------------


def test_hf_id_offline_is_a_clear_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(InputError) as info:
        load_prompts("some-org/some-prompts:test")
    assert str(info.value) == (
        "cannot load dataset 'some-org/some-prompts' from the Hugging Face hub: the machine is "
        "offline (give a local .jsonl or .csv file instead)"
    )


def test_hf_id_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails before any network use
    with pytest.raises(MissingDependencyError, match="pip install 'constitutional-ai\\[train\\]'"):
        load_prompts("some-org/some-prompts")


def test_local_dataset_dir_goes_through_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local dataset folder is read by ``datasets`` with no network (the rows become records)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "myset"
    folder.mkdir()
    _write_lines(
        folder / "data.json",
        [json.dumps({"question": "q one", "topic": "a"}), json.dumps({"question": "q two"})],
    )
    recs = load_prompts(str(folder), category_column="topic")
    assert [(r.id, r.text, r.category, r.source) for r in recs] == [
        ("myset-1", "q one", "a", str(folder)),
        ("myset-2", "q two", "uncategorized", str(folder)),
    ]
    with pytest.raises(InputError, match=r"cannot load dataset .*split 'validation'"):
        load_prompts(f"{folder}:validation")
