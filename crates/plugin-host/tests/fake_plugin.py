#!/usr/bin/env python3
"""A fake gatekeeper plugin for the plugin-host tests (Python 3 standard library only).

Usage: fake_plugin.py MODE [PATH]

PATH is a file the plugin appends JSON lines to (what it observed). The *first run* of a test is
the first process that finds no `PATH.started` marker (it creates it); without PATH every run is
a first run. `modify_request` echoes the request with `context.pid`, `context.conn` and
`context.instance` (GATEKEEPER_PLUGIN_INSTANCE) set. Modes:
  normal           modifier: handshake, answer configure/start/heartbeat/stop, echo modify_request
  multi            like normal, over two connections
  wrong_token      call add_upstream before the handshake, then handshake with a wrong token
  wrong_version    handshake with protocol version 99
  flaky_heartbeat  first run: never answer heartbeats
  upstream         after start, call the manager methods and record the answers
  garbage          after start call add_upstream; first run: answer modify_request with a garbage
                   line instead of a response
  bad_id           first run: answer modify_request with a response id never issued (424242)
  wrong_type       first run: answer modify_request with a result of the wrong type
  late             answer modify_request 600 ms late (every run)
  router           router: declares add_upstream/remove_upstream/route_request; keeps the
                   upstreams it is sent; route_request answers the first upstream id it knows
  instance1_dies   records its pid; instance 1 exits after 0.5 s, the others behave normally
  slow_start       never answer start
  ignore_stop      answer stop but do not exit
  pids             records its pid and instance at startup, then like normal (standby spares too)
  fails_twice      counts its runs in PATH.runs; runs 1 and 2 write two stderr lines and exit 7
                   before the handshake; later runs behave normally
  always_fails     writes 12 stderr lines (`complaint 1` ..) and exits 7 before the handshake
  hog              like pids, and every modify_request keeps 1 MiB more memory
  dies_soon        like normal, but exits 0.1 s after answering start (every run)
  null_result      answer modify_request with a `null` result
  dies_on_call     instance 0's processes exit on their 3rd modify_request, without answering it
  no_retry         like dies_on_call, and declares modify_request `no_retry` in the handshake
  checks           records `{"check": <flag>}` at configure; with check=true and a `bad` key in
                   the config, answers configure with the error `cfg.yml:3: bad: <value>`
  reports_config   after start, sends config_status with an error twice; once PATH.ok exists,
                   sends config_status with a null error
  pushes_in_start  upstream: inside start, calls add_upstream (`push0` ..) every 0.3 s for 3 s,
                   then answers start
  trickles_in_start upstream: inside start, calls add_upstream every 0.1 s forever; never
                   answers start
  logs_in_start    inside start, writes a stderr line every 0.1 s forever; never answers start
"""
import itertools
import json
import os
import socket
import sys
import threading
import time

MODE = sys.argv[1] if len(sys.argv) > 1 else "normal"
PATH = sys.argv[2] if len(sys.argv) > 2 else None
IDS = itertools.count(1)
MODIFY_CALLS = itertools.count(1)
FIRST_RUN = True
UPSTREAMS = []
HOG = []
HOOKS = {
    "router": ["add_upstream", "remove_upstream", "route_request", "bogus_hook"],
}


def log(msg):
    print(f"fake-plugin[{os.getpid()}] {MODE}: {msg}", file=sys.stderr, flush=True)


def record(obj):
    if PATH:
        with open(PATH, "a") as f:
            f.write(json.dumps(obj) + "\n")


def log_forever():
    while True:
        log("still starting")
        time.sleep(0.1)


class Conn:
    def __init__(self, index):
        self.index = index
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.environ["GATEKEEPER_SOCKET"])
        self.rfile = self.sock.makefile("rb")
        self.lock = threading.Lock()
        self.pending = {}

    def send_raw(self, data):
        with self.lock:
            self.sock.sendall(data)

    def send(self, obj):
        self.send_raw((json.dumps(obj, separators=(",", ":")) + "\n").encode())

    def call(self, method, params):
        id_ = next(IDS)
        self.pending[id_] = method
        self.send({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})
        return id_

    def call_sync(self, method, params):
        """Only before the handshake succeeded: nothing else arrives then."""
        id_ = self.call(method, params)
        for line in self.rfile:
            msg = json.loads(line)
            if msg.get("id") == id_:
                self.pending.pop(id_, None)
                return msg
        sys.exit(4)

    def reply(self, msg, result=None, error=None):
        out = {"jsonrpc": "2.0", "id": msg["id"]}
        if error is not None:
            out["error"] = error
        else:
            out["result"] = result if result is not None else {}
        self.send(out)

    def handshake(self, token, version):
        params = {
            "token": token,
            "protocol_version": version,
            "hooks": HOOKS.get(MODE, ["modify_request", "bogus_hook"]),
            # modify_response is not declared: wanting its body is ignored.
            "bodies": ["modify_request", "modify_response"],
        }
        if MODE == "no_retry":
            # modify_response is not declared: not retrying it is ignored.
            params["no_retry"] = ["modify_request", "modify_response"]
        return self.call("handshake", params)

    def on_response(self, msg):
        method = self.pending.pop(msg.get("id"), None)
        if method == "handshake":
            if "error" in msg:
                record({"method": "handshake", "error": msg["error"]})
                log(f"handshake refused: {msg['error']}")
                os._exit(3)
            log(f"connection {self.index} handshaken: {msg['result']}")
            return
        record({"method": method, "result": msg.get("result"), "error": msg.get("error")})

    def on_request(self, msg):
        method = msg["method"]
        params = msg.get("params") or {}
        if method == "configure" and MODE == "checks":
            config = params.get("config") or {}
            record({"check": params.get("check", False)})
            if params.get("check") and "bad" in config:
                self.reply(msg, error={"code": -32602, "message": f"cfg.yml:3: bad: {config['bad']}"})
            else:
                self.reply(msg)
            return
        if method == "configure":
            record({"configure": params.get("config")})
            self.reply(msg)
        elif method == "start":
            if MODE == "slow_start":
                return
            if MODE in ("pushes_in_start", "trickles_in_start"):
                threading.Thread(target=self.push_in_start, args=(msg,), daemon=True).start()
                return
            if MODE == "logs_in_start":
                threading.Thread(target=log_forever, daemon=True).start()
                return
            self.reply(msg)
            if MODE == "garbage":
                self.call("add_upstream", {"upstream": {"id": "nope"}})
            if MODE == "reports_config":
                self.call("config_status", {"error": "cfg.yml:1: k: rejected"})
                self.call("config_status", {"error": "cfg.yml:1: k: rejected"})
                threading.Thread(target=self.report_ok_later, daemon=True).start()
            if MODE == "dies_soon":
                threading.Timer(0.1, os._exit, args=(5,)).start()
            if MODE == "upstream":
                self.call("add_upstream", {"upstream": {"id": "u1", "hostnames": ["a.example"]}})
                self.call("add_upstream", {"upstream": {"id": "taken"}})
                self.call("remove_backend", {"upstream_id": "u1", "backend_id": "b9"})
                self.call("add_backend", {"upstream_id": "u1"})
        elif method == "heartbeat":
            if MODE == "flaky_heartbeat" and FIRST_RUN:
                return
            self.reply(msg)
        elif method == "stop":
            self.reply(msg)
            if MODE != "ignore_stop":
                log("stopping")
                os._exit(0)
        elif method == "modify_request":
            if FIRST_RUN and MODE == "garbage":
                self.send_raw(b"this is not json\n")
                return
            if FIRST_RUN and MODE == "bad_id":
                self.send_raw(b'{"jsonrpc":"2.0","id":424242,"result":{}}\n')
                return
            if FIRST_RUN and MODE == "wrong_type":
                self.reply(msg, {"request": 5})
                return
            if MODE == "hog":
                HOG.append(b"x" * (1 << 20))
            if MODE == "null_result":
                self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
                return
            if (MODE in ("dies_on_call", "no_retry")
                    and os.environ.get("GATEKEEPER_PLUGIN_INSTANCE") == "0"
                    and next(MODIFY_CALLS) == 3):
                record({"died": os.getpid()})
                log("exiting on a modify_request")
                os._exit(5)
            request = params["request"]
            request.setdefault("context", {})
            request["context"]["conn"] = self.index
            request["context"]["pid"] = os.getpid()
            request["context"]["instance"] = os.environ.get("GATEKEEPER_PLUGIN_INSTANCE")
            if MODE == "late":
                threading.Timer(0.6, self.reply, args=(msg, {"request": request})).start()
                return
            self.reply(msg, {"request": request})
        elif method == "add_upstream" and MODE == "router":
            UPSTREAMS.append(params["upstream"]["id"])
            record({"add_upstream": params["upstream"]["id"], "pid": os.getpid()})
            self.reply(msg)
        elif method == "route_request" and MODE == "router":
            self.reply(msg, {"upstream": UPSTREAMS[0]} if UPSTREAMS else {})
        else:
            self.reply(msg, error={"code": -32601, "message": f"no {method}"})

    def push_in_start(self, start):
        calls = 10 if MODE == "pushes_in_start" else None
        every = 0.3 if MODE == "pushes_in_start" else 0.1
        made = 0
        while calls is None or made < calls:
            time.sleep(every)
            self.call("add_upstream", {"upstream": {"id": f"push{made}"}})
            made += 1
        self.reply(start)

    def report_ok_later(self):
        for _ in range(400):
            if os.path.exists(PATH + ".ok"):
                self.call("config_status", {"error": None})
                return
            time.sleep(0.05)

    def serve(self):
        for line in self.rfile:
            msg = json.loads(line)
            if "method" in msg:
                if "id" in msg:
                    self.on_request(msg)
            else:
                self.on_response(msg)
        log(f"connection {self.index} closed")
        os._exit(0)


def main():
    global FIRST_RUN
    if PATH:
        marker = PATH + ".started"
        FIRST_RUN = not os.path.exists(marker)
        open(marker, "a").close()
    if MODE == "instance1_dies":
        instance = os.environ.get("GATEKEEPER_PLUGIN_INSTANCE")
        record({"pid": os.getpid(), "instance": instance})
        if instance == "1":
            time.sleep(0.5)  # let instance 0 start and record its pid too
            os._exit(3)
    if MODE in ("pids", "hog"):
        record({"pid": os.getpid(), "instance": os.environ.get("GATEKEEPER_PLUGIN_INSTANCE")})
    if MODE == "fails_twice":
        runs_file = PATH + ".runs"
        runs = int(open(runs_file).read()) + 1 if os.path.exists(runs_file) else 1
        with open(runs_file, "w") as f:
            f.write(str(runs))
        if runs <= 2:
            log(f"run {runs}: cannot start yet")
            print(f"run {runs}: giving up", file=sys.stderr, flush=True)
            os._exit(7)
    if MODE == "always_fails":
        for i in range(1, 13):
            print(f"complaint {i}", file=sys.stderr, flush=True)
        os._exit(7)
    token = os.environ["GATEKEEPER_TOKEN"]
    version = int(os.environ["GATEKEEPER_PROTOCOL_VERSION"])
    log(f"started as {os.environ['GATEKEEPER_PLUGIN_NAME']} ({os.environ['GATEKEEPER_PLUGIN_TYPE']})")
    first = Conn(0)
    if MODE == "wrong_token":
        answer = first.call_sync("add_upstream", {"upstream": {"id": "early"}})
        record({"method": "add_upstream", "error": answer.get("error")})
        token = "not-the-token"
    if MODE == "wrong_version":
        version = 99
    first.handshake(token, version)
    conns = [first]
    if MODE == "multi":
        second = Conn(1)
        second.handshake(token, version)
        conns.append(second)
    threads = [threading.Thread(target=c.serve, daemon=True) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
