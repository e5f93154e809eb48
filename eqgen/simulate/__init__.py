"""Finite-d simulations of each model family: the ground truth the theories are checked against.

One module per family (`committee`: one-pass online SGD of two-layer networks at input
dimension d, THEORY §1.1), plus `progress`, a progress bar for long runs. Each simulator returns
a `Solution` shaped like the theory's (seed means, with `<name>_stderr` standard errors), so that
`eqgen.compare` can put the two side by side.
"""
