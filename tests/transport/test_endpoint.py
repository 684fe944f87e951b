"""ENDPOINT parsing: the forms a user may type (README "Endpoints")."""

from __future__ import annotations

import pytest

from zfile.errors import EndpointError
from zfile.transport.endpoint import is_loopback, parse_endpoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://10.0.0.7:6000", "tcp://10.0.0.7:6000"),
        ("node7:6000", "tcp://node7:6000"),
        ("node7", "tcp://node7:5555"),
        ("127.0.0.1", "tcp://127.0.0.1:5555"),
        ("[::1]:7000", "tcp://[::1]:7000"),
        ("[::1]", "tcp://[::1]:5555"),
        ("ipc:///tmp/zfile.sock", "ipc:///tmp/zfile.sock"),
        ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*"),
        ("  node7  ", "tcp://node7:5555"),
    ],
)
def test_accepted_forms(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "ftp://host:1", "tcp://host", "host:0", "host:70000", "host:port", "::1:5555", "ipc://", ":5555", "tcp://:1"],
)
def test_refused_forms(text):
    with pytest.raises(EndpointError):
        parse_endpoint(text)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.8.9.10:5555", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///run/zfile.sock", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://10.1.2.3:5555", False),
        ("tcp://node7:5555", False),
    ],
)
def test_is_loopback(endpoint, loopback):
    assert is_loopback(endpoint) is loopback
