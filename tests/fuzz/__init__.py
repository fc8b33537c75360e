"""Hypothesis fuzz targets: short runs in the normal suite, long runs with ``make fuzz``."""
