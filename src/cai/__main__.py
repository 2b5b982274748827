"""``python -m cai``: the same command line as ``cai``."""

from cai.cli import main

main()
