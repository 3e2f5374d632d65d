"""Entry point for `python -m kinject`."""

import sys

from .cli.main import main

sys.exit(main())
