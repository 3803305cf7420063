"""`python -m clip_age ...` is the `clip-age` command."""

import sys

from clip_age.cli import main

sys.exit(main())
