"""Subcommands of `eqgen` that live in their own modules (registered in `eqgen.cli`).

Each module exposes `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`."""
