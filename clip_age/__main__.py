"""`python -m clip_age ...` is the `clip-age` command."""

import sys

from clip_age.cli import main

# Guarded: decode worker processes start from a forkserver, which imports the main module again.
if __name__ == "__main__":
    sys.exit(main())
