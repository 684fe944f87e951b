"""What the CLI puts on screen: examples in every command's --help, nothing
cut off, every environment variable named, one unit for sizes, and no
control character of a stored name."""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
from tqdm import tqdm

from zfile.cli import settings
from zfile.cli.commands import main
from zfile.cli.common import BAR_UNITS, Tally
from zfile.cli.listing import Directory, ls_line
from zfile.client.client import Result
from zfile.client.plan import Outcome
from zfile.server.config import ServerConfig

from ..conftest import zfile_cli

COMMANDS = sorted(main.commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_shows_examples(command):
    text = zfile_cli(command, "--help").stdout
    examples = re.findall(rf"^ +zfile {command} ", text, re.M)
    assert "Examples:" in text and 2 <= len(examples) <= 3, text


def test_the_command_list_cuts_no_description_off():
    text = zfile_cli("--help").stdout
    listing = text.split("Commands:", 1)[1].strip().splitlines()
    assert sorted(line.split()[0] for line in listing) == COMMANDS
    assert not [line for line in listing if line.rstrip().endswith("...")], listing


def env_vars(command: str) -> dict[str, str]:
    """Option name -> the environment variable zfile.cli.settings reads for it."""
    found = {"config_path": settings.CONFIG_ENV}
    if command == "serve":
        found |= {f.name: f"ZFILE_{f.name.upper()}" for f in dataclasses.fields(ServerConfig)}
    else:
        found |= dict(settings._CLIENT_ENV)
    return found


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_with_an_environment_variable_names_it(command):
    env = env_vars(command)
    options = [p for p in main.commands[command].params if p.name in env and not p.hidden]
    if command != "keygen":
        assert options
    for option in options:
        assert f"env {env[option.name]}" in (option.help or ""), (command, option.name, option.help)


def test_the_bar_and_the_summary_share_one_unit():
    # 2.5 MB is 2.50MB on the bar, as the summary line prints it (MB = 10^6 bytes).
    meter = tqdm.format_meter(2_500_000, 5_000_000, 1.0, **BAR_UNITS)
    assert "2.50MB/5.00MB" in meter, meter
    assert "10^6 bytes" in zfile_cli("--help").stdout


def test_the_bar_counts_files_done_of_the_total():
    out = io.StringIO()
    with tqdm(total=30, file=out, **BAR_UNITS) as bar:
        tally = Tally("send", 3, bar)
        tally.file_done(Outcome("a", result=Result("a", 10, b"")))
        tally.file_done(Outcome("b", error=None))
        assert bar.desc == "send 1/3 files"
        assert tally.interrupted().startswith("1 of 3 file(s) done")


def test_ls_never_prints_a_control_character_of_a_stored_name():
    from zfile.protocol.events import Entry

    line = ls_line(Entry("a\x9b31mb\nc\x1b.txt", 5, 0, 0o644, "blake3", b"\0" * 32, 0.0))
    assert line.endswith("  a\\x9b31mb\\nc\\x1b.txt") and line.isprintable()
    line = ls_line(Directory("d\x1b[2J/", files=2, size=10, mtime_ns=0))
    assert line.endswith("  d\\x1b[2J/") and line.isprintable()
