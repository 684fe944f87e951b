"""The zfile protocol, sans I/O: events, frame encoding, name rules, digests,
and the per-transfer state machine with its flow control.

Nothing here imports zmq, asyncio or the file system (h11's design): the
transport and the two ends feed it events and do what it says.
docs/protocol.md is the reference.
"""

from zfile.protocol.machine import *  # noqa: F403
from zfile.protocol.machine import __all__  # noqa: F401
