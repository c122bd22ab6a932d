"""Loopback ports for the servers the tests start themselves (SMTP, web roles, a dead Redis)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port no one listens on now: the operating system picks it, so parallel runs do not collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
