from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai.backends import CachedBackend, MockBackend, MockRule
from cai.errors import InputError
from cai.records import GenerationRequest, PromptRecord, SamplingParams
from cai.store import JsonlWriter, ResponseCache, read_jsonl


def _rec(i: int) -> PromptRecord:
    return PromptRecord(id=f"p{i}", text=f"question {i}", category="c")


def test_writer_resumes_and_never_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path, PromptRecord) as w:
        w.write_all(_rec(i) for i in range(3))
    with JsonlWriter(path, PromptRecord) as w:
        assert w.done == {"p0", "p1", "p2"}
        w.write_all(_rec(i) for i in range(5))
    assert [r.id for r in read_jsonl(path, PromptRecord)] == ["p0", "p1", "p2", "p3", "p4"]


def test_torn_tail_from_a_crash_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path, PromptRecord) as w:
        w.write_all(_rec(i) for i in range(2))
    with path.open("a") as fh:
        fh.write('{"version": 1, "id": "p2", "te')  # crash mid-line
    with JsonlWriter(path, PromptRecord) as w:
        assert w.done == {"p0", "p1"}
        w.write(_rec(2))
    assert [r.id for r in read_jsonl(path, PromptRecord)] == ["p0", "p1", "p2"]


def test_broken_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(_rec(0).model_dump_json() + "\n\n{not json}\n" + _rec(1).model_dump_json())
    with pytest.raises(InputError, match=r"bad\.jsonl:3: not valid JSON"):
        list(read_jsonl(path, PromptRecord))


def test_unknown_field_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    row = json.loads(_rec(0).model_dump_json()) | {"colour": "red"}
    path.write_text(_rec(1).model_dump_json() + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:2: colour: Extra inputs"):
        list(read_jsonl(path, PromptRecord))


def test_cache_migrations_are_recorded_once(tmp_path: Path) -> None:
    c = ResponseCache(tmp_path / "c.sqlite")
    c.put_many([("k", "m", "generate", "{}", {"a": 1})])
    c.close()
    c = ResponseCache(tmp_path / "c.sqlite")
    assert c.get_many(["k", "missing"]) == {"k": {"a": 1}}
    assert c.count() == 1
    names = [r[0] for r in c._db.execute("SELECT name FROM _migrations")]
    assert names == ["m001_responses"]


def test_cached_backend_serves_repeats_without_model_calls(tmp_path: Path) -> None:
    inner = MockBackend()
    cache = ResponseCache(tmp_path / "c.sqlite")
    be = CachedBackend(inner, cache)
    reqs = [GenerationRequest.user(f"q{i}") for i in range(4)]
    params = SamplingParams(max_new_tokens=20)
    first = be.generate([*reqs, reqs[0]], params)
    assert inner.requests_seen == 4  # the duplicate in one batch is generated once
    second = CachedBackend(MockBackend(), cache)
    again = second.generate(reqs, params)
    assert [g.text for g in again] == [g.text for g in first[:4]]
    assert all(g.cached for g in again)
    other = second.generate(reqs[:1], SamplingParams(max_new_tokens=20, temperature=1, seed=3))
    assert not other[0].cached  # sampling settings are part of the key


def test_errors_are_not_cached(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    failing = CachedBackend(MockBackend(rules=[MockRule(when="q", error="down")]), cache)
    assert failing.generate([GenerationRequest.user("q")], SamplingParams())[0].error == "down"
    healthy = CachedBackend(MockBackend(), cache)
    g = healthy.generate([GenerationRequest.user("q")], SamplingParams())[0]
    assert g.finish_reason == "stop" and not g.cached


def test_cache_keys_ignore_default_settings(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    be = CachedBackend(MockBackend(), cache)
    req = [GenerationRequest.user("q")]
    be.generate(req, SamplingParams(max_new_tokens=20))
    again = be.generate(req, SamplingParams(max_new_tokens=20, repetition_penalty=1.0))
    assert again[0].cached
    other = be.generate(req, SamplingParams(max_new_tokens=20, repetition_penalty=1.3))
    assert not other[0].cached
