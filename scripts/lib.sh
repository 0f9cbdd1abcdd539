# Shell helpers shared by scripts/bench.sh and scripts/chaos.sh (sourced, not run):
# installing missing Debian packages, picking free loopback ports, waiting for a port to open.

# install_missing PACKAGE...: apt-get installs the packages given (nothing when none).
install_missing() {
  (($#)) || return 0
  echo "==> installing $*"
  apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
}

# free_port: a TCP port on 127.0.0.1 that is free now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: waits up to 10 s for 127.0.0.1:PORT to accept connections.
wait_port() {
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}
