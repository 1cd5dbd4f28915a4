"""Fixtures for the local InfluxDB 1.6.7 and VictoriaMetrics."""
