"""``python -m skkp``: the ``skkp`` command (e.g. ``torchrun --nproc_per_node=2 -m skkp train ...``)."""
import sys

from .cli import main

sys.exit(main())
