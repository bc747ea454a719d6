"""The lowest layer: argument checks (the one error vocabulary), atomic file writes, deferred signals,
the named choices shared by every layer, BLAS thread settings and the ArviZ version check.

Pure Python (NumPy at most); imports nothing else of ``reprior``.
"""
