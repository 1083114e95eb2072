"""``python -m dicontour``: the same as the ``dicontour`` command."""

import sys

from .cli import main

sys.exit(main())
