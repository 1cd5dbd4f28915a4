"""A canary key for tests that build watchers and canaries themselves."""

from __future__ import annotations

from prober.probes.canary import CanaryKey

# Long and distinctive, so a grep for it in logs, points and reports cannot miss it
TEST_KEY_TEXT = "test-canary-key-5b1f0c9e2d7a4e88a1c3"
TEST_KEY = CanaryKey(TEST_KEY_TEXT.encode(), "test:fixed")
OTHER_KEY = CanaryKey(b"another-vantage-key-9f8e7d6c5b4a", "test:other")
