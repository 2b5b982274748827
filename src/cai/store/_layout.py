"""Where a run's files are: one lookup for a pipeline run directory and a command's out dir.

Owns: ``run_file``, which maps a run-relative path (``data/sl_cai.jsonl``) to the file that
exists, so that what ``cai critique``, ``cai pairs``, ``cai feedback`` and ``cai redteam`` write
into ``--out DIR`` (flat: ``DIR/sl_cai.jsonl``) is read by ``cai oversee DIR``, ``cai diagnose
DIR`` and ``cai serve DIR`` as readily as a ``cai run`` directory (``DIR/data/...``).
Must not know: what the files hold.
"""

from __future__ import annotations

from pathlib import Path


def run_file(run_dir: str | Path, rel: str) -> Path:
    """``run_dir/rel`` when it exists; else the same file at the top of ``run_dir`` for a
    ``data/`` path (a command's flat out dir); else ``run_dir/rel`` (where a run writes it)."""
    run = Path(run_dir)
    canonical = run / rel
    if canonical.exists():
        return canonical
    parts = Path(rel).parts
    if len(parts) > 1 and parts[0] == "data":
        flat = run.joinpath(*parts[1:])
        if flat.exists():
            return flat
    return canonical
