"""Fixtures live in one module per part of the local stack, each owned by its room."""

pytest_plugins = [
    "tests.fixtures_mail",
    "tests.fixtures_influx",
]
