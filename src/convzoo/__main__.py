"""``python -m convzoo ...``: the ``convzoo`` command (what ``torchrun -m convzoo train ...`` starts)."""

import sys

from convzoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
