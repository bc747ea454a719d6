"""Evaluation: what a run is worth.  Per-run diagnostics (ESS, R-hat, MCSE), distances to the
infinite-width limit, the log-Sobolev bound, reference posteriors and cost to accuracy, comparisons
across cells and simulation-based calibration.

It runs the inference layer's kernels and never imports the experiment layer (runner, reports, plots,
command line).
"""
