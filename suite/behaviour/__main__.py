"""`python -m suite.behaviour ARGS` is `python -m suite behaviour ARGS` (the command recorded in older runs)."""

import sys

from ..cli import main

sys.exit(main(["behaviour", *sys.argv[1:]]))
