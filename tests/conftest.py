"""Fixtures live in one module per part of the local stack, each owned by its room."""

import pytest

pytest_plugins = [
    "tests.fixtures_mail",
    "tests.fixtures_influx",
]

# scripts/test.sh hands whole files to its workers in collection order: the files that
# take minutes go first, so that none of them starts late and keeps the run waiting
# (test_demo.py alone is about as long as the rest of a worker's share)
LONG_FILES = ("tests/integration/test_demo.py", "tests/integration/test_daemon_faults.py",
              "tests/integration/test_check_leftovers.py", "tests/integration/test_daemon.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable
