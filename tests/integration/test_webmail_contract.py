"""One page-open limit: `[sla.clauses.webmail_broadband] mean_max_s = 5` reaches every
reader of it alike — `prober check`'s row, the probe's default timeout, the point's
`threshold_s` and the score."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from prober.commands.webmail_check import OK, WARNING, check_webmail
from prober.config import Config, load
from prober.schema import WEBMAIL_LOAD, WebmailOutcome
from prober.sla.local import PointsEvidence
from prober.sla.score import BREACH, PASS, score
from tests.webserver import WebServer, page

pytestmark = pytest.mark.integration

SEPT_2026_NS = 1_789_000_000 * 10**9  # 2026-09-10 UTC


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    srv = WebServer({"/": page("<html><body><p>Sign in</p></body></html>")}).start()
    yield srv
    srv.stop()


def config(tmp_path: Path, base: str, override: str) -> Config:
    path = tmp_path / "probes.toml"
    path.write_text(f'[vantage]\nname = "v1"\nstate_dir = "{tmp_path / "state"}"\n'
                    f'[[webmail]]\nname = "mail"\nurl = "{base}/"\n'
                    f'profiles = ["broadband", "narrowband"]\n{override}')
    return load(path)


def test_an_overridden_limit_reaches_check_timeout_point_and_score(
        server: WebServer, tmp_path: Path) -> None:
    cfg = config(tmp_path, server.base,
                 "[sla]\ntimezone = \"UTC\"\n[sla.clauses.webmail_broadband]\nmean_max_s = 5\n")
    bb, nb = cfg.webmail[0].profiles
    assert cfg.webmail[0].timeout_for(bb, cfg.contract) == 10.0
    assert cfg.webmail[0].timeout_for(nb, cfg.contract) == 60.0

    rows = asyncio.run(check_webmail(cfg.webmail, cfg.vantage.name, cfg.contract))
    assert [r.target for r in rows] == ["mail/broadband", "mail/narrowband"]
    assert rows[0].values["threshold_s"] == 5.0 and rows[1].values["threshold_s"] == 30.0
    assert "(broadband limit 5 s)" in rows[0].detail and rows[0].state == OK
    m = rows[0].measurement
    assert m is not None and m.name == WEBMAIL_LOAD
    assert m.tags["outcome"] == WebmailOutcome.OK
    assert m.fields["threshold_s"] == 5.0 and m.fields["timeout_s"] == 10.0
    assert m.fields["contract_class"] == "broadband"

    # The score of a month whose one broadband load opened in 7 s: over 5, under 10. One
    # load is no month of evidence: the coverage minimum is waived to see the limit applied.
    slow = m.with_fields(open_s=7.0, load_s=7.0)
    slow = type(slow)(slow.name, slow.tags, slow.fields, SEPT_2026_NS)
    evidence = PointsEvidence.from_measurements([slow])
    verdict = {v.clause.id: v for v in score(evidence, replace(cfg.sla, min_coverage=0.0),
                                             2026, 9, now_ns=time.time_ns()).verdicts}
    assert verdict["webmail_broadband"].status == BREACH
    assert verdict["webmail_broadband"].clause.num("mean_max_s") == 5.0
    default = config(tmp_path, server.base, "[sla]\ntimezone = \"UTC\"\n")
    verdict = {v.clause.id: v for v in score(evidence, replace(default.sla, min_coverage=0.0),
                                             2026, 9, now_ns=time.time_ns()).verdicts}
    assert verdict["webmail_broadband"].status == PASS

    # and `prober check` calls the same 7 s over the limit
    from prober.commands.webmail_check import row_for
    assert row_for(cfg.webmail[0], bb, slow, cfg.contract).state == WARNING
    assert row_for(default.webmail[0], bb, slow, default.contract).state == OK
