"""``python -m fsrt``: the same CLI as the ``fsrt`` command (for a Python whose scripts folder is not on PATH)."""

from fsrt.cli import main

main()
