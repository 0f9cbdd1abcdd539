#!/usr/bin/env python3
"""An upstream plugin written from docs/protocol.md alone (no SDK) that calls the manager methods
a test tells it to, and records every answer. manager.bats uses it to check the manager's
validation and error codes.

Settings, from the configure map, overridden by `--key VALUE` on its command line:

  record    file to append one JSON line per manager call:
            {"step": STEP, "method": METHOD, "result": ...} or {..., "error": {"code", "message"}}
  start     file of JSON lines {"step", "method", "params"}: calls made, in order, each waiting
            for its answer, before `start` is answered
  commands  file polled every `poll_ms` (default 50) milliseconds once started: each new
            complete line is a call as above
  start_pause_ms  milliseconds to wait before each call of `start` (default 0): a slow push

It answers `configure`, `start`, `heartbeat` and `stop` (and `{}` to anything else), and reads
and writes concurrently: a reader thread dispatches answers to the waiting callers.
"""
import json
import os
import socket
import sys
import threading
import time

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["GATEKEEPER_SOCKET"])
reader, writer = sock.makefile("r"), sock.makefile("w")
write_lock = threading.Lock()
pending = {}  # our request id -> [threading.Event, response]
pending_lock = threading.Lock()
next_id = [0]
settings = {}


def args_settings():
    words, found = sys.argv[1:], {}
    for i, word in enumerate(words):
        if word.startswith("--") and i + 1 < len(words):
            found[word[2:]] = words[i + 1]
    return found


def send(message):
    with write_lock:
        writer.write(json.dumps(message, separators=(",", ":")) + "\n")
        writer.flush()


def call(method, params, timeout=5.0):
    with pending_lock:
        next_id[0] += 1
        request_id = next_id[0]
        waiter = [threading.Event(), None]
        pending[request_id] = waiter
    send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    if not waiter[0].wait(timeout):
        return {"error": {"code": "timeout", "message": "no answer"}}
    return waiter[1]


def record(entry):
    path = settings.get("record")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def run_step(line):
    step = json.loads(line)
    response = call(step["method"], step.get("params", {}))
    entry = {"step": step.get("step"), "method": step["method"]}
    if "error" in response:
        entry["error"] = response["error"]
    else:
        entry["result"] = response.get("result")
    record(entry)


def run_file(path, pause_ms=0):
    with open(path) as f:
        for line in f:
            if line.strip():
                time.sleep(pause_ms / 1000)
                run_step(line)


def watch_commands(path):
    done = 0
    while True:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        lines = text.split("\n")[:-1]  # complete lines only
        for line in lines[done:]:
            if line.strip():
                run_step(line)
        done = len(lines)
        time.sleep(int(settings.get("poll_ms", 50)) / 1000)


def on_start(request_id):
    if settings.get("start"):
        run_file(settings["start"], int(settings.get("start_pause_ms", 0)))
    send({"jsonrpc": "2.0", "id": request_id, "result": {}})
    if settings.get("commands"):
        threading.Thread(target=watch_commands, args=(settings["commands"],), daemon=True).start()


def read_loop():
    for line in reader:
        if not line.strip():
            continue
        message = json.loads(line)
        if "method" not in message:  # an answer to one of our calls
            with pending_lock:
                waiter = pending.pop(message.get("id"), None)
            if waiter:
                waiter[1] = message
                waiter[0].set()
            continue
        method, request_id = message["method"], message.get("id")
        if method == "configure":
            settings.update(message.get("params", {}).get("config", {}))
            settings.update(args_settings())
        if method == "start":
            threading.Thread(target=on_start, args=(request_id,), daemon=True).start()
            continue
        send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        if method == "stop":
            break
    os._exit(0)


threading.Thread(target=read_loop, daemon=True).start()
answer = call("handshake", {"token": os.environ["GATEKEEPER_TOKEN"], "protocol_version": 1,
                            "hooks": []})
if "error" in answer:
    print(f"handshake refused: {answer['error']}", file=sys.stderr)
    os._exit(1)
threading.Event().wait()
