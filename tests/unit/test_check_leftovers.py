"""The check's own ledger: settled entries are pruned, open ones become lost in time."""

from __future__ import annotations

import time
from pathlib import Path

from prober.agent.ledger import Ledger
from prober.commands.check_leftovers import KEEP_RESOLVED_S, Leftovers
from prober.config import Config, load
from prober.measurement import Measurement

TAGS = {"vantage": "v", "route": "r", "sender": "a@x.test", "recipient": "b@x.test",
        "direction": "internal"}


def config(tmp: Path) -> Config:
    path = tmp / "probes.toml"
    path.write_text(f'[vantage]\nname = "v"\nstate_dir = "{tmp}"\n')
    return load(path)


def entered(ledger: Ledger, canary: str, outcome: str, accepted_ns: int) -> None:
    ledger.enter(canary, "r", "b", 1, TAGS)
    ledger.record(Measurement("mail_roundtrip", TAGS, {"canary": canary, "outcome": outcome},
                              accepted_ns))


def test_settled_entries_are_pruned_after_a_week_open_ones_become_lost(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    ledger = Ledger(tmp_path / "check-canaries.db")
    now = time.time_ns()
    entered(ledger, "delivered1", "delivered", now)
    entered(ledger, "pending1", "pending", now)
    left = Leftovers(cfg, ledger)
    left.settle([], now_ns=now + int(cfg.canary.lost_after_s * 1e9) - 1)
    assert left.points == [] and ledger.get("delivered1") is not None
    left.settle([], now_ns=now + int(cfg.canary.lost_after_s * 1e9) + 1)
    (lost,) = left.points
    assert lost.fields["outcome"] == "lost" and lost.time_ns == now
    assert "pending -> lost" in left.notes[0]
    left.settle([], now_ns=time.time_ns() + int(KEEP_RESOLVED_S * 1e9) + 1)
    assert ledger.get("delivered1") is None and ledger.get("pending1") is None
    ledger.close()
