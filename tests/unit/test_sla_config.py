from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import pytest

from prober.config.reader import ConfigError, Section
from prober.config.sla import parse_sla
from prober.contract import BY_ID, CLAUSES, with_overrides


def parse(text: str):
    return parse_sla(Section(tomllib.loads(text), "probes.toml"))


def test_defaults_and_full_section() -> None:
    assert parse("").quorum is None
    s = parse("""
[sla]
timezone = "Asia/Shanghai"
quorum = 2
min_coverage = 0.95
mailboxes = ["alice"]
webmail_timeout_s = 50
[sla.clauses.send_delay]
mean_max_s = 45
max_over = 0
penalty = "one month free"
[sla.clauses.webmail_narrowband]
profiles = ["dial", "gprs"]
[[sla.maintenance]]
start = 2026-11-03T02:00:00
end = 2026-11-03T03:00:00
reason = "upgrade"
[[sla.exclusion]]
start = 2026-11-05T01:00:00Z
end = "2026-11-05T02:00:00+00:00"
reason = "our firewall"
""")
    assert (s.timezone, s.quorum, s.min_coverage, s.mailboxes) == ("Asia/Shanghai", 2, 0.95,
                                                                   ("alice",))
    # a local time is read in [sla] timezone (UTC+8)
    assert s.maintenance[0].start == datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
    assert s.exclusions[0].end == datetime(2026, 11, 5, 2, 0, tzinfo=UTC)
    clauses = {c.id: c for c in with_overrides(s.clauses)}
    assert clauses["send_delay"].num("mean_max_s") == 45.0
    assert clauses["send_delay"].num("max_over") == 0
    assert clauses["send_delay"].penalty == "one month free"
    assert clauses["webmail_narrowband"].names("profiles") == ("dial", "gprs")
    assert "mean <= 45 s" in clauses["send_delay"].promise_text()
    assert clauses["receive_delay"].num("mean_max_s") == 60.0  # untouched


@pytest.mark.parametrize(("text", "where"), [
    ('[sla]\ntimezone = "Mars/Olympus"', "sla.timezone"),
    ('[sla]\nquorum = 0', "sla.quorum"),
    ('[sla]\nquorm = 2', "sla.quorm: unknown key"),
    ('[sla.clauses.uptime]\nx = 1', "sla.clauses.uptime: no such clause"),
    ('[sla.clauses.send_delay]\nmean = 1', "sla.clauses.send_delay.mean: clause send_delay"),
    ('[sla.clauses.send_delay]\nmax_over = 1.5', "sla.clauses.send_delay.max_over"),
    ('[[sla.maintenance]]\nstart = 2026-11-03T02:00:00Z\nend = 2026-11-03T01:00:00Z\n'
     'reason = "x"', "sla.maintenance[0].end: must be after start"),
    ('[[sla.exclusion]]\nstart = 2026-11-03T02:00:00Z\nend = 2026-11-03T03:00:00Z',
     "sla.exclusion[0].reason: is required"),
    ('[[sla.exclusion]]\nstart = "yesterday"\nend = 2026-11-03T03:00:00Z\nreason = "x"',
     "sla.exclusion[0].start"),
    ('[sla]\ndead_address = "ignore"', "sla.dead_address: must be one of fault, all_fail; "
     "got 'ignore'"),
    ('[sla]\ndead_address = 1', "sla.dead_address: must be"),
])
def test_errors_name_file_and_key(text: str, where: str) -> None:
    with pytest.raises(ConfigError, match="probes.toml: " + where.replace("[", r"\[")
                       .replace("]", r"\]")):
        parse(text)


def test_every_clause_of_the_contract_is_listed() -> None:
    ids = [c.id for c in CLAUSES]
    assert ids[:9] == ["connectivity", "send_delay", "receive_delay", "fault_time",
                       "adjustment_time", "availability", "fault_free_days",
                       "webmail_narrowband", "webmail_broadband"]
    assert all(not BY_ID[i].measured for i in ("backup", "provisioning", "customer_service",
                                                 "billing"))
    # §4/§5 are judged from the GTUBE/EICAR probes (not measured when none ran)
    assert BY_ID["anti_spam"].measured and BY_ID["anti_virus"].measured


def test_config_check_prints_the_scope_and_clause_settings_as_toml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from prober.config import load
    from prober.config.show import render

    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[vantage]\nname = "v1"\nstate_dir = "{tmp_path}"\n\n[sla]\n'
                   'vantages = ["v1", "v2"]\nroutes = ["r1"]\nmailboxes = ["a@x.test"]\n'
                   '[sla.clauses.send_delay]\nmin_coverage = 0.5\nmean_max_s = 50\n')
    sla = tomllib.loads(render(load(cfg)))["sla"]
    assert sla["vantages"] == ["v1", "v2"] and sla["routes"] == ["r1"]
    assert sla["clauses"] == {"send_delay": {"mean_max_s": 50.0}}
    assert sla["clause_min_coverage"] == {"send_delay": 0.5}


def test_dead_address_rule_defaults_to_fault() -> None:
    assert parse("").dead_address == parse("[sla]\n").dead_address == "fault"
    assert parse('[sla]\ndead_address = "all_fail"').dead_address == "all_fail"


def test_readme_lists_the_dead_address_rules_the_code_takes() -> None:
    from pathlib import Path

    import prober
    from prober.config.sla import DEAD_ADDRESS_RULES

    readme = (Path(prober.__file__).parents[1] / "README.md").read_text()
    bounded = readme.split("- **Numbers** must be finite", 1)[1].split("- **Strings**", 1)[0]
    row = next(line for line in bounded.splitlines() if "`dead_address`" in line)
    assert row.split("|")[2].strip() == " / ".join(f"`{r}`" for r in DEAD_ADDRESS_RULES), row


def test_a_wrong_dead_address_rule_exits_3_naming_file_and_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from prober.cli import main

    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[vantage]\nname = "v1"\nstate_dir = "{tmp_path}"\n\n[sla]\n'
                   'dead_address = "sometimes"\n')
    for args in (["config", "check", "-c", str(cfg)], ["score", "-c", str(cfg), "--month",
                                                       "2026-10", "--source", "spool"]):
        r = CliRunner().invoke(main, args)
        print(r.exit_code, r.output.strip())
        assert r.exit_code == 3, (args, r.output)
        assert f"{cfg}: sla.dead_address: must be one of fault, all_fail" in r.output
