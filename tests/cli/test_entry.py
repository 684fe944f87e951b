"""The ``zfile`` entry point freezes the import-time heap out of the garbage
collector's full collections before it runs a command."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import gc, sys
from zfile.cli import main
before = gc.get_freeze_count()
sys.argv = ["zfile", "--help"]
try:
    main()
except SystemExit as exc:
    print(before, gc.get_freeze_count(), exc.code)
"""


@pytest.mark.slow
def test_the_entry_point_freezes_the_import_heap_then_runs_the_command() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    before, after, code = out.stdout.split()[-3:]
    assert int(before) == 0
    assert int(after) > 1000  # the modules and click commands imported so far
    assert code in ("0", "None")
    assert "Usage: zfile" in out.stdout
