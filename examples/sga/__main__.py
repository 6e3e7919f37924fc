"""``python3 -m examples.sga``: see :mod:`examples.sga.cli`."""

import sys

from .cli import main

sys.exit(main())
