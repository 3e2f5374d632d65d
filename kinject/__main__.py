"""Entry point for `python -m kinject`."""

import sys

from .cli import main

sys.exit(main())
