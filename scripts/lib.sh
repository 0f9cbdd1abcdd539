# shellcheck shell=bash
# Shell helpers shared by the scripts that measure (bench.sh, bench-instructions.sh, scale.sh,
# chaos.sh; sourced, not run):
# installing missing Debian packages, picking free loopback ports, waiting for a port to open,
# the measuring helpers (child processes, strace -c summaries, peak RSS) and start_work (a temp
# dir and the processes to stop on exit).

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

# child_pids PID: the process ids whose parent is PID, one a line (none: nothing).
child_pids() {
  local status
  for status in /proc/[0-9]*/status; do
    awk -v parent="$1" '$1 == "PPid:" && $2 == parent { split(FILENAME, part, "/"); print part[3] }' \
      "$status" 2>/dev/null || true
  done
}

# process_name PID: the command name of PID (its /proc comm), "?" once it is gone.
process_name() {
  cat "/proc/$1/comm" 2>/dev/null || echo "?"
}

# syscall_summary FILE REQUESTS: one line from an `strace -c` table in FILE: system calls per
# request in total and the five most frequent, each per request (those under 0.005 left out).
syscall_summary() {
  awk -v requests="$2" '
    /^------/ { dashes++; next }
    dashes == 1 && NF >= 5 { calls[$NF] += $4; total += $4 }
    END {
      line = sprintf("%7.1f syscalls/request; top:", total / requests)
      for (shown = 0; shown < 5; shown++) {
        best = ""
        for (name in calls) if (best == "" || calls[name] > calls[best]) best = name
        if (best == "" || calls[best] / requests < 0.005) break
        line = line sprintf(" %s %.2f", best, calls[best] / requests)
        delete calls[best]
      }
      print line
    }' "$1"
}

# rss_kb PID...: the sum of the resident set sizes (VmRSS) of the PIDs, in KiB.
rss_kb() {
  local pid total=0 kb
  for pid in "$@"; do
    kb=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# peak_rss_while FILE PID...: samples rss_kb PID... every 100 ms while FILE exists and then
# writes the highest sample to FILE.peak (run it in the background; remove FILE to stop it).
peak_rss_while() {
  local flag=$1 peak=0 now
  shift
  while [[ -e $flag ]]; do
    now=$(rss_kb "$@")
    ((now > peak)) && peak=$now
    sleep 0.1
  done
  echo "$peak" >"$flag.peak"
}

# start_work NAME: makes WORK, a temp dir /tmp/gatekeeper-NAME.XXXXXX, and an empty PIDS; on
# exit every PID in PIDS is stopped (TERM, then KILL after 0.3 s) and WORK removed.
start_work() {
  WORK=$(mktemp -d "/tmp/gatekeeper-$1.XXXXXX")
  PIDS=()
  trap stop_work EXIT
}

# stop_work: what start_work runs on exit.
stop_work() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
