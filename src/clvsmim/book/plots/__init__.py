"""Plotting functions, one per figure, grouped by chapter. Each takes plain data and returns a matplotlib Figure."""
