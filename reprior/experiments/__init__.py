"""Experiments: data loaders, the sweep runner (grid, store, executors, status), reports and plots,
the checks before a sweep, and the ``reprior`` command line.  The top layer: nothing imports it.
"""
