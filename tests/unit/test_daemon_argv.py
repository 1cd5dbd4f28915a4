"""`prober run` is parsed without click (prober.commands.run.daemon_argv) so that the daemon
does not keep click resident: every command line it takes must mean what it means to
click, and every other one must go to click."""

from __future__ import annotations

import warnings

import pytest

from prober.cli import main
from prober.commands.run import DaemonArgs, daemon_argv


def click_reading(argv: list[str]) -> DaemonArgs:
    """What the click group makes of a `run` command line (verbose, config, ticks)."""
    ctx = main.make_context("prober", list(argv))
    with warnings.catch_warnings():  # click 8.2 deprecates protected_args (merged in 9.0)
        warnings.simplefilter("ignore", DeprecationWarning)
        rest = [*ctx.protected_args, *ctx.args]
    name, cmd, args = main.resolve_command(ctx, rest)
    assert name == "run" and cmd is not None
    sub = cmd.make_context(name, args, parent=ctx)
    return DaemonArgs(ctx.params["verbose"], sub.params["config_path"], sub.params["ticks"])


TAKEN = [
    ["run"],
    ["run", "-c", "/etc/p.toml"],
    ["run", "--config", "/etc/p.toml"],
    ["run", "--config=/etc/p.toml"],
    ["run", "-c/etc/p.toml"],
    ["run", "--ticks", "3"],
    ["run", "--ticks=12", "-c", "a.toml"],
    ["-v", "run", "-c", "a.toml"],
    ["-vv", "--verbose", "run", "-c", "a", "-c", "b", "--ticks", "1"],
    ["run", "-c", "-odd-name.toml"],
]


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
@pytest.mark.parametrize("env", [None, "/srv/from-env.toml", ""])
def test_a_daemon_command_line_means_what_it_means_to_click(
        argv: list[str], env: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if env is None:
        monkeypatch.delenv("PROBER_CONFIG", raising=False)
    else:
        monkeypatch.setenv("PROBER_CONFIG", env)
    ours = daemon_argv(argv)
    assert ours is not None
    assert ours == click_reading(argv)


@pytest.mark.parametrize("argv", [
    [], ["check"], ["--version"], ["--help"], ["run", "--help"], ["run", "-h"],
    ["run", "--ticks", "0"], ["run", "--ticks", "x"], ["run", "--ticks", "-1"],
    ["run", "--ticks"], ["run", "-c"], ["run", "--tick", "3"], ["run", "-v"],
    ["run", "extra"], ["run", "--", "-c", "x"], ["-x", "run"], ["config", "check"],
    ["run", "--ticks", "٣"],  # a digit to str.isdigit, not to click
], ids=lambda a: " ".join(a) or "(none)")
def test_everything_else_goes_to_click(argv: list[str]) -> None:
    assert daemon_argv(argv) is None
