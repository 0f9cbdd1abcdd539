#!/usr/bin/env python3
"""Socket activation without systemd, for the bats suites: binds 127.0.0.1:PORT, puts the
listening socket on fd 3, sets LISTEN_FDS=1, LISTEN_PID (this process's pid, which exec keeps)
and LISTEN_FDNAMES=NAME, then execs COMMAND.

    socket-activate.py PORT NAME COMMAND [ARGS...]
"""
import os
import socket
import sys

port, name, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(128)
os.dup2(sock.fileno(), 3, inheritable=True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=name)
os.execvp(command[0], command)
