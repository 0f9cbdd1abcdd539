#!/usr/bin/env python3
"""A fake systemd notify socket for the bats suites: binds an AF_UNIX datagram socket at PATH
and appends every datagram it receives to OUT as one line (its newlines turned into spaces)."""
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
with open(out, "a", encoding="utf-8") as f:
    while True:
        data = sock.recv(65536)
        f.write(data.decode("utf-8", "replace").strip().replace("\n", " ") + "\n")
        f.flush()
