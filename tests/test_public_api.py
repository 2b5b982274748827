"""The curated API: every name in ``cai.__all__`` resolves, and none of it imports torch."""

from __future__ import annotations

import subprocess
import sys

import cai


def test_every_public_name_resolves() -> None:
    for name in cai.__all__:
        assert getattr(cai, name) is not None, name


def test_all_lists_exactly_the_lazy_names_and_the_errors() -> None:
    assert len(set(cai.__all__)) == len(cai.__all__)
    eager = {"BackendError", "CaiError", "InputError", "MissingDependencyError", "__version__"}
    assert set(cai.__all__) == eager | set(cai._LAZY)


def test_public_names_do_not_import_torch_until_training() -> None:
    code = (
        "import sys, cai\n"
        "for n in cai.__all__:\n"
        "    if not n.startswith('train_'):\n"
        "        getattr(cai, n)\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
