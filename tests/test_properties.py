"""Property tests (hypothesis) for the loaders of user files.

Whatever bytes a prompt file (JSONL or CSV), a constitution, a label file, a pair file, a
preference file or a recipe holds, loading it either returns valid records or raises
``InputError`` with one line that starts with the file's name (and, where it gives a line, a line
the file has), never another exception; what loads holds only text that can be written back as
UTF-8 (no lone surrogates). Records written by the store read back equal, odd text included; and
a good file that merely looks odd (unicode, RTL, emoji, 100 kB text, CRLF line endings, a BOM,
U+2028 inside a string, an emoji as a JSON surrogate-pair escape) still loads.

Deterministic for CI: ``derandomize=True`` and no example database; modest example counts.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cai.constitution import load_constitution
from cai.errors import InputError
from cai.evaluate import load_labels, load_suite
from cai.feedback import load_pairs
from cai.pipeline import load_recipe
from cai.records import Message, PairRecord, PreferenceRecord, PromptRecord
from cai.store import JsonlWriter, load_prompts, parse_yaml, read_jsonl, write_records
from cai.store._yaml import plain
from cai.train._data import read_preferences

REPO = Path(__file__).resolve().parents[1]
CONSTITUTION = REPO / "src/cai/constitution/packs/default.yaml"
RECIPE = REPO / "examples/smoke.yaml"
LABELS = REPO / "src/cai/evaluate/data/calibration_pairs.jsonl"
PROMPTS = REPO / "src/cai/data/prompts/helpful.jsonl"

FAST = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SLOW = settings(FAST, max_examples=30)  # the constitution is 760 lines of YAML: ~0.1 s a load

# --- what a loader may do with bad input ------------------------------------------------------


def _lines_in(data: bytes) -> int:
    return len(re.split(rb"\r\n|\r|\n", data))


def _check(load: Callable[[Path], object], path: Path, data: bytes) -> None:
    """Load ``data`` from ``path``: success, or one InputError line naming the file (and a line
    the file has); any other exception fails the test."""
    path.write_bytes(data)
    try:
        loaded = load(path)
    except InputError as exc:
        msg = str(exc)
        assert msg and not re.search(r"[\r\n]", msg), repr(msg)
        name = next((n for n in (str(path), str(path.resolve())) if msg.startswith(n)), None)
        assert name is not None, f"message does not start with the file: {msg!r}"
        line = re.match(r":(\d+):", msg[len(name) :])
        if line:
            assert 1 <= int(line.group(1)) <= _lines_in(data), msg
    else:
        for text in _strings(loaded):
            text.encode("utf-8")  # what loaded can be written out (no lone surrogates)


def _strings(obj: object) -> Iterator[str]:
    """Every string in a loaded value: records, dataclasses, containers."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            yield from _strings(v)


def _preferences(path: Path) -> object:
    return read_preferences([path])


def _prompts(path: Path) -> object:
    return load_prompts(str(path))


# Values of every JSON type, nested a little: what a wrong-typed field holds.
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "x\udfff", "\ud83d\ude42", "\x00", "\u2028"])  # JSON-escaped
)
JSON_VALUE = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
SPECIAL = [
    *(b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3", b"\r", b"\r\n", b"\n", b'"', b"{", b"]"),
    *(b",", b":", b"- ", b"\t", "\u2028".encode(), b"\\", b"\\ud800", b'"\\ud83d\\ude42"'),
    b"x" * 100_000,
]


def _damaged(seed: bytes) -> st.SearchStrategy[bytes]:
    """Bytes near a valid file: cut, spliced with random or special bytes, or random outright."""
    at = st.integers(0, len(seed))
    splice = st.tuples(at, st.integers(0, 30), st.binary(max_size=30) | st.sampled_from(SPECIAL))
    return st.one_of(
        at.map(lambda i: seed[:i]),
        splice.map(lambda t: seed[: t[0]] + t[2] + seed[t[0] + t[1] :]),
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda t: t.encode("utf-8")),
        st.just(b"\xef\xbb\xbf" + seed),
    )


def _retyped(records: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """JSONL of the records with some fields replaced by any JSON value, dropped, or added."""

    def line(rec: dict[str, Any]) -> st.SearchStrategy[str]:
        keys = st.sampled_from(sorted(rec)) | st.text(max_size=6)
        changes = st.dictionaries(keys, JSON_VALUE, max_size=3)
        drops = st.sets(st.sampled_from(sorted(rec)), max_size=2)
        return st.builds(
            lambda c, d: json.dumps({k: v for k, v in {**rec, **c}.items() if k not in d}),
            changes,
            drops,
        )

    return st.tuples(*(line(r) for r in records)).map(lambda ls: ("\n".join(ls) + "\n").encode())


ANY_TEXT = st.text(max_size=20) | st.sampled_from(
    ["\ud800", "a\udfff b", "\ud83d\ude42", "\x00", "\u2028", "\ufeff", " ", "", "\r\n"]
)


def _text_swapped(tree: Any, dump: Callable[[Any], bytes]) -> st.SearchStrategy[bytes]:
    """``dump`` of ``tree`` with one string (at any depth) replaced by any text, lone UTF-16
    surrogates included (json writes them as ``\\ud800`` escapes)."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        copy = json.loads(json.dumps(tree))
        paths: list[tuple[Any, Any]] = []

        def walk(node: Any) -> None:
            for key, value in node.items() if isinstance(node, dict) else enumerate(node):
                if isinstance(value, str):
                    paths.append((node, key))
                elif isinstance(value, dict | list):
                    walk(value)

        walk(copy)
        node, key = draw(st.sampled_from(paths))
        node[key] = draw(ANY_TEXT)
        return dump(copy)

    return build()


def _jsonl_records(path: Path, n: int) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()[:n]]


def _preference(i: int, text: str = "Call a locksmith.") -> dict[str, Any]:
    return {
        "id": f"pref-{i}",
        "prompt": [{"role": "user", "content": f"How do I pick lock {i}?"}],
        "chosen": [{"role": "assistant", "content": text}],
        "rejected": [{"role": "assistant", "content": "Insert a pick."}],
        "soft_label": 0.75,
        "margin": 1.5,
        "principle_ids": ["harm.crime"],
        "models": {"policy": "mock", "feedback": "mock"},
        "template_version": "feedback/1",
        "seed": 0,
    }


PROMPT_ROWS = _jsonl_records(PROMPTS, 3)
LABEL_ROWS = _jsonl_records(LABELS, 3)
PAIR_ROWS = [{k: r[k] for k in ("prompt", "response_a", "response_b")} for r in LABEL_ROWS]
PREF_ROWS = [_preference(i) for i in range(3)]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


PROMPTS_CSV = _csv(
    [["id", "prompt", "category"], *([r["id"], r["text"], "x"] for r in PROMPT_ROWS)]
)

JSONL_TARGETS = [
    ("prompts.jsonl", _prompts, PROMPT_ROWS),
    ("labels.jsonl", load_labels, LABEL_ROWS),
    ("pairs.jsonl", load_pairs, PAIR_ROWS),
    ("preferences.jsonl", _preferences, PREF_ROWS),
]


@pytest.mark.parametrize(("name", "load", "rows"), JSONL_TARGETS, ids=[t[0] for t in JSONL_TARGETS])
def test_damaged_jsonl_is_loaded_or_a_clean_error_naming_the_file(
    tmp_path: Path, name: str, load: Callable[[Path], object], rows: list[dict[str, Any]]
) -> None:
    @FAST
    @given(data=_damaged(_jsonl(rows)) | _retyped(rows) | _text_swapped(rows, _jsonl))
    def run(data: bytes) -> None:
        _check(load, tmp_path / name, data)

    run()


def test_damaged_csv_prompts_are_loaded_or_a_clean_error(tmp_path: Path) -> None:
    cells = st.text(max_size=10) | st.sampled_from(["", '"', "a,b", "\r", "\u2028", "\x00"])
    rows = st.lists(st.lists(cells, max_size=4), max_size=4).map(_csv)

    @FAST
    @given(data=_damaged(PROMPTS_CSV) | rows)
    def run(data: bytes) -> None:
        _check(_prompts, tmp_path / "prompts.csv", data)

    run()


def _yaml_retyped(tree: Any) -> st.SearchStrategy[bytes]:
    """The document with one value at any depth replaced by another JSON value, written as
    JSON (which is YAML)."""
    pristine = json.dumps(tree)

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        tree = node = json.loads(pristine)
        for _ in range(5):
            keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if not isinstance(node[key], dict | list) or draw(st.booleans()):
                node[key] = draw(JSON_VALUE)
                break
            node = node[key]
        return json.dumps(tree).encode()

    return build()


@pytest.mark.parametrize("which", ["constitution", "recipe"])
def test_damaged_yaml_is_loaded_or_a_clean_error_naming_the_file(
    tmp_path: Path, which: str
) -> None:
    seed = CONSTITUTION if which == "constitution" else RECIPE
    load: Callable[[Path], object] = load_constitution if which == "constitution" else load_recipe
    text = seed.read_text(encoding="utf-8")

    tree = plain(parse_yaml(text, "seed"))
    swapped = _text_swapped(tree, lambda t: json.dumps(t).encode())

    @(SLOW if which == "constitution" else FAST)
    @given(data=_damaged(seed.read_bytes()) | _yaml_retyped(tree) | swapped)
    def run(data: bytes) -> None:
        _check(load, tmp_path / f"{which}.yaml", data)

    run()


NAMED_LINES = [
    ("prompts.csv", _prompts, b"id,prompt\na,fine\nb,bad \x00 byte\n", ":3: NUL byte"),
    (
        "prompts.jsonl",
        _prompts,
        b'{"prompt": "a"}\n{"prompt": "b \\udc00"}\n',
        ":2: not valid JSON",
    ),
    (
        "labels.jsonl",
        load_labels,
        _jsonl(LABEL_ROWS[:1]) + b'{"prompt": "\\ud800"}\n',
        ":2: not valid",
    ),
    ("recipe.yaml", load_recipe, b"version: 1\nrun_dir: runs/x\nname: \xff\n", ":3: not UTF-8"),
    ("recipe.yaml", load_recipe, b"version: 1\n\nname: a\x00b\n", ":3: invalid YAML"),
    ("recipe.yaml", load_recipe, b'version: 1\nname: "x \\ud800"\n', ":2: invalid YAML"),
    ("pairs.jsonl", load_pairs, b"\n\n", ": no pairs"),
    ("preferences.jsonl", _preferences, b"", ": no preference records"),
    (
        "preferences.jsonl",
        _preferences,
        _jsonl([PREF_ROWS[0], PREF_ROWS[1], PREF_ROWS[0]]),
        ":3: duplicate preference id",
    ),
    ("empty-suite.jsonl", lambda p: load_suite(f"harmful={p}"), b"", ": no prompts"),
]


@pytest.mark.parametrize(("name", "load", "data", "says"), NAMED_LINES)
def test_bad_bytes_are_errors_at_their_line(
    tmp_path: Path, name: str, load: Callable[[Path], object], data: bytes, says: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        load(path)
    assert str(err.value).startswith((f"{path}{says}", f"{path.resolve()}{says}")), err.value


# --- round trips -----------------------------------------------------------------------------

# Any text but surrogates, weighted towards what breaks naive readers.
ODD = st.sampled_from(
    ["\u2028", "\u2029", "\x85", "\x0c", "\r", "\r\n", "\n", "\ufeff", '"', "\\", "\x00", "🙂",
     "\u05e9\u05dc\u05d5\u05dd", "\u202e", "a" * 5000, ",", "\t"]
)  # fmt: skip
TEXT = st.lists(st.text(max_size=20) | ODD, max_size=5).map("".join)
NONBLANK = st.tuples(TEXT, st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=5))
NONBLANK_TEXT = NONBLANK.map(lambda t: t[0] + t[1])


@st.composite
def prompt_records(draw: st.DrawFn) -> list[PromptRecord]:
    texts = draw(st.lists(NONBLANK_TEXT, max_size=5))
    return [
        PromptRecord(
            id=f"{draw(TEXT)}#{i}",
            text=t,
            category=draw(TEXT),
            kind=draw(st.sampled_from(["harmful", "helpful", "borderline", "custom"])),
            split=draw(st.sampled_from(["train", "heldout"])),
            source=draw(TEXT),
        )
        for i, t in enumerate(texts)
    ]


@FAST
@given(records=prompt_records())
def test_prompt_records_written_read_back_equal(
    tmp_path: Path, records: list[PromptRecord]
) -> None:
    path = write_records(tmp_path / "prompts.jsonl", records)
    assert list(read_jsonl(path, PromptRecord)) == records
    assert load_prompts(str(path)) == records  # the prompt-set loader keeps stored records as is


@FAST
@given(records=prompt_records(), cut=st.integers(0, 5))
def test_jsonl_writer_resumes_and_reads_back_equal(
    tmp_path: Path, records: list[PromptRecord], cut: int
) -> None:
    path = tmp_path / "w.jsonl"
    path.unlink(missing_ok=True)
    with JsonlWriter(path, PromptRecord) as w:
        w.write_all(records[:cut])
    with JsonlWriter(path, PromptRecord) as w:  # a rerun: what is on disk is known, not rewritten
        assert w.done == {r.id for r in records[:cut]}
        w.write_all(records)
    assert list(read_jsonl(path, PromptRecord)) == records


def _messages(last: str) -> st.SearchStrategy[list[Message]]:
    turn = st.builds(Message, role=st.sampled_from(["system", "user", "assistant"]), content=TEXT)
    final = st.builds(Message, role=st.just(last), content=TEXT)
    return st.tuples(st.lists(turn, max_size=2), final).map(lambda t: [*t[0], t[1]])


PREFERENCE = st.builds(
    PreferenceRecord,
    id=TEXT,
    prompt=_messages("user"),
    chosen=_messages("assistant"),
    rejected=_messages("assistant"),
    soft_label=st.floats(0.0, 1.0),
    margin=st.floats(allow_nan=False, allow_infinity=False),
    principle_ids=st.lists(TEXT, max_size=3),
    models=st.dictionaries(TEXT, TEXT, max_size=2),
    template_version=TEXT,
    seed=st.integers(-(2**63), 2**63 - 1),
)


@FAST
@given(records=st.lists(PREFERENCE, min_size=1, max_size=4, unique_by=lambda r: r.id))
def test_preferences_written_read_back_equal(
    tmp_path: Path, records: list[PreferenceRecord]
) -> None:
    path = write_records(tmp_path / "preferences.jsonl", records)
    got, files = read_preferences([path])
    assert got == records and files[0].records == len(records)


@FAST
@given(prompts=prompt_records().filter(bool), a=NONBLANK_TEXT, b=NONBLANK_TEXT)
def test_pairs_written_read_back_equal(
    tmp_path: Path, prompts: list[PromptRecord], a: str, b: str
) -> None:
    pairs = [
        PairRecord(id=p.id, prompt=p, response_a=a, response_b=b, models={}, seeds=[1, 2])
        for p in prompts
    ]
    assert load_pairs(write_records(tmp_path / "pairs.jsonl", pairs)) == pairs


@FAST
@given(texts=st.lists(NONBLANK_TEXT.filter(lambda t: "\x00" not in t), min_size=1, max_size=5))
def test_csv_prompt_cells_read_back_equal(tmp_path: Path, texts: list[str]) -> None:
    path = tmp_path / "prompts.csv"
    path.write_bytes(_csv([["id", "prompt"], *([f"p{i}", t] for i, t in enumerate(texts))]))
    assert [r.text for r in load_prompts(str(path))] == texts


# --- good files that merely look odd -----------------------------------------------------------

ODD_TEXT = (
    "Caf\u00e9 \u65e5\u672c\u8a9e \U0001f642\U0001f3f3\ufe0f\u200d\U0001f308 "
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202eRTL override\u202c "
    "line\u2028separator next\u0085line \x0cform-feed"
)
LONG_TEXT = "a long prompt " * 7_500  # ~100 kB


def _odd_files(records: list[dict[str, Any]], key: str) -> dict[str, bytes]:
    """The records as JSONL with odd-but-valid text in ``key``, raw (not \\u-escaped), in several
    encodings of the same content: plain, CRLF, BOM, long."""
    odd = [{**r, key: ODD_TEXT + f" {i}"} for i, r in enumerate(records)]
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in odd).encode()
    long = [{**r, key: LONG_TEXT + f" {i}"} for i, r in enumerate(records)]
    return {
        "unicode": raw,
        "crlf": raw.replace(b"\n", b"\r\n"),
        "bom": b"\xef\xbb\xbf" + raw,
        "long": _jsonl(long),
    }


ODD_CASES = [
    (target, variant, data)
    for target, rows, key in [
        ("prompts.jsonl", [{"id": r["id"], "prompt": r["text"]} for r in PROMPT_ROWS], "prompt"),
        ("labels.jsonl", LABEL_ROWS, "response_a"),
        ("pairs.jsonl", PAIR_ROWS, "response_b"),
        ("preferences.jsonl", PREF_ROWS, "id"),
    ]
    for variant, data in _odd_files(rows, key).items()
]


@pytest.mark.parametrize(
    ("target", "variant", "data"), ODD_CASES, ids=[f"{t}-{v}" for t, v, _ in ODD_CASES]
)
def test_an_odd_but_good_jsonl_file_loads(
    tmp_path: Path, target: str, variant: str, data: bytes
) -> None:
    path = tmp_path / target
    path.write_bytes(data)
    want = LONG_TEXT if variant == "long" else ODD_TEXT
    if target == "prompts.jsonl":
        assert [r.text for r in load_prompts(str(path))] == [f"{want} {i}" for i in range(3)]
    elif target == "labels.jsonl":
        assert len(load_labels(path)) == 3
    elif target == "pairs.jsonl":
        assert [p.response_b for p in load_pairs(path)] == [f"{want} {i}" for i in range(3)]
    else:
        assert [r.id for r in read_preferences([path])[0]] == [f"{want} {i}" for i in range(3)]


@pytest.mark.parametrize("variant", ["crlf", "bom", "crlf+bom"])
def test_an_odd_but_good_constitution_and_recipe_load_as_the_original(
    tmp_path: Path, variant: str
) -> None:
    for seed, load in ((CONSTITUTION, load_constitution), (RECIPE, load_recipe)):
        data = seed.read_bytes()
        if "crlf" in variant:
            data = data.replace(b"\n", b"\r\n")
        if "bom" in variant:
            data = b"\xef\xbb\xbf" + data
        path = tmp_path / seed.name
        path.write_bytes(data)
        assert load(path) == load(seed), (seed.name, variant)


def test_a_constitution_with_odd_unicode_text_loads(tmp_path: Path) -> None:
    text = CONSTITUTION.read_text(encoding="utf-8")
    first = re.search(r"^    title: (.*)$", text, re.MULTILINE)
    assert first is not None
    odd = ODD_TEXT.replace("\u2028", " ").replace("\x85", " ")  # YAML 1.1 line breaks
    path = tmp_path / "odd.yaml"
    path.write_text(text[: first.start(1)] + json.dumps(odd) + text[first.end(1) :], "utf-8")
    loaded = load_constitution(path)
    assert loaded.principles[0].title == odd
