"""free_ports: ports for isolated stacks, outside the range the kernel hands to outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

from streamlab.config import HOST, free_ports


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = free_ports(30)
    assert len(set(ports)) == 30
    assert all(1024 <= p < low for p in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind((HOST, port))


def test_a_port_in_use_is_never_handed_out():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    held = []
    try:
        for port in range(max(1024, low - 12000), low):  # hold every candidate but 5
            s = socket.socket()
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            held.append(s)
        free = {s.getsockname()[1] for s in held[-5:]}
        for s in held[-5:]:
            s.close()
        assert set(free_ports(5)) == free
    finally:
        for s in held:
            s.close()
