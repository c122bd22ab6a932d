"""Which hosts are this machine: the one rule behind "plain http only to loopback", for webhook targets and EHR
servers alike."""

from __future__ import annotations

import ipaddress


def loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL's host name, lower case) names this machine: ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
