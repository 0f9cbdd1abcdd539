"""Just enough of WebSocket (RFC 6455) for the tests: the accept key and reading and writing
frames. Used by backend.py (/ws, an echo server) and ws-client.py."""
import base64
import hashlib
import os
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key):
    """The Sec-WebSocket-Accept for a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def _read_exactly(rfile, n):
    data = rfile.read(n)
    if len(data) != n:
        raise EOFError(f"connection closed ({len(data)} of {n} bytes)")
    return data


def _xor(data, mask):
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def read_frame(rfile):
    """Reads one frame: (opcode, payload). Fragments are not reassembled (the tests send none)."""
    b0, b1 = _read_exactly(rfile, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _read_exactly(rfile, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _read_exactly(rfile, 8))[0]
    mask = _read_exactly(rfile, 4) if b1 & 0x80 else None
    payload = _read_exactly(rfile, n) if n else b""
    if mask and payload:
        payload = _xor(payload, mask)
    return b0 & 0x0F, payload


def frame(opcode, payload, masked):
    """One final frame; clients mask, servers do not."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if masked:
        mask = os.urandom(4)
        return head + mask + (_xor(payload, mask) if payload else b"")
    return head + payload
