"""Bad input, fuzzed through the CLI: every broken file must end in exit code 1 or 2 with a message
naming the file, never a traceback or a hang.

Targets (each command runs in-process with click's runner, on mock models):
  constitution  ``cai constitution lint FILE --embedder hash`` from the bundled default pack
                (the hash embedder: MiniLM's load would make each case seconds)
  prompts       ``cai critique --prompts FILE.jsonl`` (mock policy and critic, 2 prompts)
  prompts_csv   ``cai critique --prompts FILE.csv`` (the same prompts as a CSV with a header row)
  labels        ``cai calibrate --judge mock --labels FILE`` (the bundled calibration pairs)
  pairs         ``cai feedback --pairs FILE`` (pairs written from the calibration pairs)
  recipe        ``cai run FILE --until prompts`` from ``examples/smoke.yaml``
  preferences   ``cai train dpo --data FILE --base mock`` (TRL prompt/chosen/rejected records):
                the data is read and validated before the base model is loaded, and ``mock``
                cannot be trained, so a file that passes ends in that spec error, counted as
                accepted; no case trains
Each case takes a small valid file and damages it with one seeded mutation: cut at a random byte, a
NUL byte, invalid UTF-8, a byte-order mark, an escaped lone surrogate (``\\udc00``), a 1 MB line, a
line deleted or doubled, a JSON value (nested ones too) or a CSV cell replaced by another type, a
CSV row made longer or shorter, random punctuation. A mutated file may still be valid (accepted is
not a failure); every other outcome must be a clean error (exit 1 or 2, message naming the file).
Prints per target and in all ``cases=N tracebacks=T hangs=H`` (and how many clean errors did not
name the file). Targets: T=0, H=0.

    .venv/bin/python bench/fuzz_inputs.py --cases 1000
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import signal
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cai.cli import cli

REPO = Path(__file__).resolve().parents[1]
CONSTITUTION = REPO / "src/cai/constitution/packs/default.yaml"
PROMPTS = REPO / "src/cai/data/prompts/helpful.jsonl"
LABELS = REPO / "src/cai/evaluate/data/calibration_pairs.jsonl"
RECIPE = REPO / "examples/smoke.yaml"
TARGETS = ("constitution", "prompts", "prompts_csv", "labels", "pairs", "recipe", "preferences")
HANG_SECONDS = 60
"""A case still running after this long is a hang (the first MiniLM load alone takes ~10 s)."""


def _seed_texts() -> dict[str, bytes]:
    labels = LABELS.read_text(encoding="utf-8").splitlines()[:6]
    pairs = [
        json.dumps({k: json.loads(x)[k] for k in ("prompt", "response_a", "response_b")})
        for x in labels
    ]
    return {
        "constitution": CONSTITUTION.read_bytes(),
        "prompts": "\n".join(PROMPTS.read_text(encoding="utf-8").splitlines()[:3]).encode() + b"\n",
        "labels": ("\n".join(labels) + "\n").encode(),
        "pairs": ("\n".join(pairs) + "\n").encode(),
        "recipe": RECIPE.read_bytes(),
        "prompts_csv": _prompts_csv(),
        "preferences": "".join(json.dumps(r) + "\n" for r in _preferences()).encode(),
    }


def _prompts_csv() -> bytes:
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["id", "prompt", "category"])
    for line in PROMPTS.read_text(encoding="utf-8").splitlines()[:3]:
        rec = json.loads(line)
        out.writerow([rec["id"], rec["text"] + ', "quoted", and more', rec["category"]])
    return buf.getvalue().encode()


def _preferences() -> list[dict[str, Any]]:
    def turn(role: str, text: str) -> list[dict[str, str]]:
        return [{"role": role, "content": text}]

    return [
        {
            "id": f"pref-{i}",
            "prompt": turn("user", f"How do I pick lock {i}? (café 🙂)"),
            "chosen": turn("assistant", "Call a locksmith; I can't help break in."),
            "rejected": turn("assistant", f"Insert a pick into lock {i}."),
            "soft_label": 0.6 + 0.1 * i,
            "margin": 1.0 + i,
            "principle_ids": ["harm.crime"],
            "models": {"policy": "mock", "feedback": "mock"},
            "template_version": "feedback/1",
            "seed": 0,
        }
        for i in range(4)
    ]


_WRONG = [None, 7, 3.5, [], {}, True, "", ["x"], {"a": 1}, -1, 1e309, "\u202e\x00", "a\ud800"]
_WRONG_CELLS = ["", "7", "null", '"', "a,b,c", "[1]", "\x00", "\ufeffx", " ", "\r"]


def _damage(obj: Any, rng: random.Random) -> Any:
    """``obj`` with one value (at any depth, half the time the top level) set to a wrong type."""
    if isinstance(obj, dict) and obj:
        key = rng.choice(sorted(obj))
        deeper = isinstance(obj[key], dict | list) and obj[key] and rng.random() < 0.5
        obj[key] = _damage(obj[key], rng) if deeper else rng.choice(_WRONG)
    elif isinstance(obj, list) and obj:
        i = rng.randrange(len(obj))
        deeper = isinstance(obj[i], dict | list) and obj[i] and rng.random() < 0.5
        obj[i] = _damage(obj[i], rng) if deeper else rng.choice(_WRONG)
    return obj


def _retype(data: bytes, rng: random.Random) -> bytes:
    text = data.decode("utf-8", "replace")
    lines = text.splitlines()
    if lines and not lines[0].lstrip().startswith(("{", "#", "version")) and "," in lines[0]:
        return _recell(text, rng)
    i = rng.randrange(len(lines))
    try:
        obj = json.loads(lines[i])
    except ValueError:
        return data
    lines[i] = json.dumps(_damage(obj, rng))
    return ("\n".join(lines) + "\n").encode()


def _recell(text: str, rng: random.Random) -> bytes:
    """A CSV with one cell (header included) replaced, or a row made longer or shorter."""
    rows = list(csv.reader(io.StringIO(text)))
    row = rows[rng.randrange(len(rows))]
    how = rng.randrange(3)
    if how == 0 and row:
        row[rng.randrange(len(row))] = rng.choice(_WRONG_CELLS)
    elif how == 1:
        row.append(rng.choice(_WRONG_CELLS))
    elif row:
        row.pop(rng.randrange(len(row)))
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "cut": lambda d, r: d[: r.randrange(len(d))],
    "nul": lambda d, r: (lambda i: d[:i] + b"\x00" + d[i:])(r.randrange(len(d))),
    "bad_utf8": lambda d, r: (lambda i: d[:i] + b"\xff\xfe\xc3" + d[i:])(r.randrange(len(d))),
    "bom": lambda d, r: b"\xef\xbb\xbf" + d,
    # an escaped lone UTF-16 surrogate: inside a JSON or YAML string it is no character
    "surrogate": lambda d, r: (lambda i: d[:i] + b"\\udc00" + d[i:])(r.randrange(len(d))),
    "huge_line": lambda d, r: (lambda i: d[:i] + b"x" * (1 << 20) + d[i:])(r.randrange(len(d))),
    "drop_line": lambda d, r: (
        lambda ls: b"\n".join(ls[:k] + ls[k + 1 :]) if (k := r.randrange(len(ls))) >= 0 else d
    )(d.split(b"\n")),
    "double_line": lambda d, r: (
        lambda ls: b"\n".join(ls[: (k := r.randrange(len(ls))) + 1] + ls[k:])
    )(d.split(b"\n")),
    "retype": _retype,
    "punctuation": lambda d, r: (
        lambda i: d[:i] + r.choice([b":", b"{", b"]", b"- ", b'"', b"\t", b"&a", b"*x"]) + d[i:]
    )(r.randrange(len(d))),
    "empty": lambda d, r: b"",
}


def _args(target: str, path: Path, out: Path) -> list[str]:
    if target == "constitution":
        return ["constitution", "lint", str(path), "--embedder", "hash"]
    if target in ("prompts", "prompts_csv"):
        return [
            "critique", "--prompts", str(path), "--policy", "mock", "--critic", "mock",
            "--limit", "2", "--out", str(out),
        ]  # fmt: skip
    if target == "labels":
        return [
            "calibrate", "--judge", "mock", "--labels", str(path), "--no-probe", "--limit", "3",
            "--out", str(out),
        ]  # fmt: skip
    if target == "pairs":
        return ["feedback", "--pairs", str(path), "--feedback", "mock", "--out", str(out)]
    if target == "preferences":
        return ["train", "dpo", "--data", str(path), "--base", MOCK_BASE, "--out", str(out)]
    return ["run", str(path), "--until", "prompts", "--run-dir", str(out)]


MOCK_BASE = "mock"
PASSED = {"preferences": f"model spec {MOCK_BASE!r}"}
"""Per target, the error that means the file passed every check (the command stops after)."""


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


def run_case(target: str, data: bytes, workdir: Path, n: int) -> tuple[str, str]:
    """(outcome, detail): accepted, clean, unnamed, traceback or hang."""
    suffix = {"constitution": ".yaml", "recipe": ".yaml", "prompts_csv": ".csv"}.get(
        target, ".jsonl"
    )
    path = workdir / f"{target}-{n}{suffix}"
    path.write_bytes(data)
    out = workdir / f"out-{target}-{n}"
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        res = CliRunner().invoke(cli, _args(target, path, out), catch_exceptions=True)
    except _Hang:
        return "hang", str(path)
    finally:
        signal.alarm(0)
    if isinstance(res.exception, _Hang):
        return "hang", str(path)
    if res.exit_code == 0:
        return "accepted", ""
    if res.exit_code in (1, 2) and (res.exception is None or isinstance(res.exception, SystemExit)):
        if target in PASSED and PASSED[target] in res.output:
            return "accepted", ""
        text = res.output.strip().splitlines()
        last = text[-1] if text else ""
        return ("clean" if path.name in res.output else "unnamed"), last[:200]
    tb = "".join(traceback.format_exception(res.exception)) if res.exception else res.output
    return "traceback", tb.strip().splitlines()[-1][:200]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000, help="cases per target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args(argv)
    seeds = _seed_texts()
    totals = {"accepted": 0, "clean": 0, "unnamed": 0, "traceback": 0, "hang": 0}
    examples: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for target in args.targets.split(","):
            rng = random.Random(f"{args.seed}-{target}")
            counts = dict.fromkeys(totals, 0)
            for n in range(args.cases):
                name = rng.choice(sorted(MUTATIONS))
                data = MUTATIONS[name](seeds[target], rng)
                outcome, detail = run_case(target, data, work, n)
                counts[outcome] += 1
                if outcome in ("traceback", "hang", "unnamed"):
                    examples.setdefault(f"{target}/{outcome}", []).append(f"{name}: {detail}")
            for k, v in counts.items():
                totals[k] += v
            print(target, " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    for key, rows in sorted(examples.items()):
        print(f"  {key} ({len(rows)}), e.g.:")
        for row in sorted(set(rows))[:4]:
            print(f"    {row}")
    n = sum(totals.values())
    print(f"unnamed={totals['unnamed']} accepted={totals['accepted']} clean={totals['clean']}")
    print(f"cases={n} tracebacks={totals['traceback']} hangs={totals['hang']}")
    return {"cases": n, **totals, "examples": examples}


if __name__ == "__main__":
    main()
