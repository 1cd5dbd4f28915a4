"""Synthetic mail prober: measure, deliver, judge."""

__version__ = "0.1.0"
