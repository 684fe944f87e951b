"""`zfile ls --human`: sizes as ls -h shows them."""

from __future__ import annotations

import pytest

from zfile.cli.commands import human_size

from ..conftest import zfile_cli


def test_human_sizes_are_powers_of_1024_as_ls_shows_them():
    sizes = [0, 1023, 1024, 1536, 10 * 1024, 20 * 1024**2, int(1.5 * 1024**3), 5 * 1024**5]
    assert [human_size(n) for n in sizes] == ["0", "1023", "1.0K", "1.5K", "10K", "20M", "1.5G", "5.0P"]


@pytest.mark.slow
def test_ls_human_prints_short_sizes(daemon, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 << 20))
    zfile_cli("send", str(big), "--to", daemon.endpoint)
    [line] = zfile_cli("ls", "--human", "--from", daemon.endpoint).stdout.splitlines()
    assert line.split()[0] == "3.0M" and line.endswith("  big.bin")
    [line] = zfile_cli("ls", "--from", daemon.endpoint).stdout.splitlines()
    assert line.split()[0] == "3,145,728"
