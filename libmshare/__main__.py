"""``python -m libmshare``: the ``mshare`` command."""

import sys

from .cli import main

sys.exit(main())
