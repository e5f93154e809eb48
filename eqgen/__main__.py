"""`python -m eqgen` runs the command line."""

from eqgen.cli import entry

entry()
