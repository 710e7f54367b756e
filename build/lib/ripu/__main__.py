"""`python -m ripu` is the `ripu` command."""

import sys

from ripu.cli import main

sys.exit(main())
