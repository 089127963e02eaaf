"""Machinery of `screener batch`: tasks, atomic output, per-worker model cache, executors."""
