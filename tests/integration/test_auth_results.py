"""What the receiving side's filters said about a canary: a real Postfix prepends an
Authentication-Results field (a header_checks PREPEND rule, per sender), and the canary's
point carries its SPF, DKIM and DMARC verdicts and the SMTP enhanced status code."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.measurement import Measurement
from tests.fixtures_mail import run_prober, write_config
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def filtering_stack() -> Iterator[MailStack]:
    with MailStack(auth_results={
        "alice": "spf=pass smtp.mailfrom=alice@example.test; "
                 "dkim=pass header.d=example.test header.s=s1; dmarc=pass header.from=example.test",
        "bob": "spf=softfail (not designated) smtp.mailfrom=bob@example.test; dkim=none; "
               "dmarc=fail (p=reject) header.from=example.test",
    }) as stack:
        os.environ.update(stack.env())
        yield stack


def test_canary_points_carry_the_verdicts_of_the_receiving_side(filtering_stack: MailStack,
                                                                tmp_path: Path):
    cfg = write_config(filtering_stack, tmp_path, routes=[
        ("alice-to-bob", "alice", "bob"), ("bob-to-carol", "bob", "carol"),
        ("carol-to-alice", "carol", "alice")])
    r = run_prober("check", "-c", str(cfg), "--no-write", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    points = {p.tags["route"]: p for p in map(Measurement.from_line,
                                              json.loads(r.stdout)["measurements"])
              if p.name == "mail_roundtrip"}
    for route, p in sorted(points.items()):
        print(route, {k: v for k, v in p.fields.items()
                      if k.endswith("_result") or k in ("authserv_id", "smtp_enhanced_code")})
    alice = points["alice-to-bob"].fields
    assert (alice["spf_result"], alice["dkim_result"], alice["dmarc_result"]) == (
        "pass", "pass", "pass")
    assert alice["authserv_id"] == "mail.example.test"
    bob = points["bob-to-carol"].fields
    assert (bob["spf_result"], bob["dkim_result"], bob["dmarc_result"]) == (
        "softfail", "none", "fail")
    # no field added for carol's mail: no verdicts, and none invented
    carol = points["carol-to-alice"].fields
    assert carol["outcome"] == "delivered"
    assert not {"spf_result", "dkim_result", "dmarc_result", "authserv_id"} & set(carol)
    # Postfix: "250 2.0.0 Ok: queued as ..."
    assert {p.fields["smtp_enhanced_code"] for p in points.values()} == {"2.0.0"}
