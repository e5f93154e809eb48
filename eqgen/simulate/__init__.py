"""Finite-d simulations of each model family: the ground truth the theories are checked against.

One module per family (`committee`: one-pass online SGD of two-layer networks at input
dimension d, docs/theory.md, with an optional held-out test set; `dmft`: multi-pass SGD of a
perceptron on n = αd reused samples, docs/dmft.md), plus `progress`, a progress bar for long
runs. Each simulator returns a `Solution` shaped like the theory's (seed means, each with its
standard error `<name>_stderr` beside it), so that `eqgen.compare` can put the two side by side.
"""
