#!/usr/bin/env bats
# The built-in plugins of the original project, end to end: dogstatsd-metrics (against a UDP
# listener standing in for the Datadog agent), simple-loadbalancer, and static-upstreams
# reloading its file.

load helpers

setup() {
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
}

teardown() {
  stop_all
}

# start_udp_listener: a UDP listener on a free 127.0.0.1 port that appends every datagram it
# receives, then a newline, to $UDP_FILE, and its size and line count to $UDP_FILE.sizes.
# Sets UDP_PORT.
start_udp_listener() {
  UDP_FILE="$BATS_TEST_TMPDIR/dogstatsd.txt"
  local port_file="$BATS_TEST_TMPDIR/udp.port"
  : >"$UDP_FILE"
  python3 -c '
import os, socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(sock.getsockname()[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
with open(sys.argv[1], "ab", buffering=0) as out, open(sys.argv[1] + ".sizes", "a") as sizes:
    while True:
        data, _ = sock.recvfrom(65535)
        out.write(data + b"\n")
        sizes.write("%d %d\n" % (len(data), data.count(b"\n") + 1))
        sizes.flush()
' "$UDP_FILE" "$port_file" &
  PIDS+=($!)
  wait_for_file "$port_file"
  UDP_PORT=$(cat "$port_file")
}

# write_metrics_config: a config file flushing metrics every 100 ms.
write_metrics_config() {
  printf 'metrics_flush_interval = "100ms"\n' >"$BATS_TEST_TMPDIR/gk.toml"
}

# udp_has REGEX: whether a received line matches the extended regex REGEX.
udp_has() {
  grep -Eq -- "$1" "$UDP_FILE"
}

@test "dogstatsd-metrics: request, upstream and event lines reach the agent over UDP" {
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  start_udp_listener
  write_metrics_config
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --metric-plugin dogstatsd-metrics --metric-address "127.0.0.1:$UDP_PORT" \
    --metric-tags 'env:test, team:edge'
  for i in 1 2 3; do
    [ "$(http_code "$GK_URL/echo/x$i")" = 200 ]
  done
  [ "$(http_code "$GK_URL/nowhere")" = 404 ]

  eventually 50 'udp_has "^gatekeeper\.request\.count:1\|c\|#.*upstream:echo.*status:200"'
  eventually 50 'udp_has "^gatekeeper\.request\.duration:[0-9]+(\.[0-9]+)?\|ms\|#.*upstream:echo"'
  eventually 50 'udp_has "^gatekeeper\.request\.upstream_duration:[0-9.]+\|ms\|#"'
  eventually 50 'udp_has "^gatekeeper\.request\.count:1\|c\|#upstream:none,status:404,method:GET,error:no_route"'
  eventually 50 'udp_has "^gatekeeper\.upstream\.latency:[0-9.]+\|ms\|#upstream:echo,backend:http://127\.0\.0\.1:$BACKEND_PORT"'
  eventually 50 'udp_has "^gatekeeper\.event\.upstream_added:1\|c\|#upstream:echo,env:test"'
  eventually 50 'udp_has "^gatekeeper\.event\.plugin_started:1\|c\|#plugin:static-upstreams,env:test"'
  # Constant tags end every line.
  grep -E '^gatekeeper\.request\.count:' "$UDP_FILE" | grep -q ',env:test,team:edge$'
  [ "$(grep -Ec '^gatekeeper\.request\.count:1\|c\|#upstream:echo,status:200' "$UDP_FILE")" -eq 3 ]
  # Several lines per datagram, never more than 1400 bytes.
  run awk '$1 > 1400 { big++ } $2 > 1 { packed++ } END { print big + 0, packed + 0 }' "$UDP_FILE.sizes"
  [ "${output%% *}" -eq 0 ]
  [ "${output##* }" -ge 1 ]
}

@test "dogstatsd-metrics: an agent that is down changes nothing for requests" {
  start_backend echo-backend
  write_upstreams "$UPSTREAMS" "$BACKEND_PORT"
  write_metrics_config
  # Nothing listens on this UDP port: sends fail (ECONNREFUSED) and are dropped.
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml" \
    --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS" \
    --metric-plugin dogstatsd-metrics --metric-address "127.0.0.1:$(free_port)"
  pid=$(plugin_pid dogstatsd-metrics)
  for i in $(seq 1 20); do
    [ "$(http_code "$GK_URL/echo/x$i")" = 200 ]
    sleep 0.02
  done
  sleep 0.3
  [ "$(plugin_pid dogstatsd-metrics)" = "$pid" ]
  [ "$(gk_log | grep -E 'plugin=dogstatsd-metrics' | grep -Ec 'ERROR|restart')" -eq 0 ]
}

@test "dogstatsd-metrics: a bad address fails startup naming the key" {
  run timeout 20 gatekeeper --listen "127.0.0.1:$(free_port)" --socket-dir "$BATS_TEST_TMPDIR" \
    --metric-plugin dogstatsd-metrics --metric-address 'no port here'
  [ "$status" -ne 0 ]
  [[ "$output" == *"address"* ]]
}

# write_lb_upstreams PORT...: upstream `pool` with the echo backends on PORTs, and upstream
# `empty` with no backends.
write_lb_upstreams() {
  write_pool "$UPSTREAMS.tmp" "" "$@"
  printf 'empty:\n  prefixes: [empty]\n  backends: []\n' >>"$UPSTREAMS.tmp"
  mv "$UPSTREAMS.tmp" "$UPSTREAMS"
}

# write_lb_config: static-upstreams and simple-loadbalancer, failing closed with 599, so a
# request that the plugin did not answer is a 599, never the built-in balancer's pick.
write_lb_config() {
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table)

[[plugin]]
name = "lb"
type = "loadbalancer"
command = "simple-loadbalancer"
failure = "closed"
failure_status = 599
TOML
}

@test "simple-loadbalancer: requests reach both backends; no backends is a 503 and all stays up" {
  start_backends b0 b1
  write_lb_upstreams "${BACKEND_PORTS[@]}"
  write_lb_config
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  lb_pid=$(plugin_pid lb)
  [ -n "$lb_pid" ]

  : >"$BATS_TEST_TMPDIR/picks"
  for i in $(seq 1 40); do
    echoed_backend "$GK_URL/pool/$i" >>"$BATS_TEST_TMPDIR/picks"
  done
  [ "$(wc -l <"$BATS_TEST_TMPDIR/picks")" -eq 40 ]
  [ "$(sort -u "$BATS_TEST_TMPDIR/picks" | tr '\n' ' ')" = "b0 b1 " ]

  for i in 1 2 3; do
    [ "$(http_code "$GK_URL/empty/x")" = 503 ]
  done
  [ "$(http_code "$GK_URL/pool/after")" = 200 ]
  [ "$(plugin_pid lb)" = "$lb_pid" ]
  kill -0 "$GK_PID"
  [ "$(gk_log | grep -i 'restart' | grep -c 'plugin=lb')" -eq 0 ]
}

@test "simple-loadbalancer: follows backends removed and added" {
  start_backends b0 b1
  write_lb_upstreams "${BACKEND_PORTS[0]}"
  write_lb_config
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  [ "$(echoed_backend "$GK_URL/pool/x")" = b0 ]
  # static-upstreams pushes the file's changes; the loadbalancer is told by gatekeeper.
  write_lb_upstreams "${BACKEND_PORTS[1]}"
  eventually 50 '[ "$(echoed_backend "$GK_URL/pool/x")" = b1 ]'
  for i in $(seq 1 10); do
    [ "$(echoed_backend "$GK_URL/pool/$i")" = b1 ]
  done
}

# write_reload_upstreams FILE ECHO_PORT [SECOND_PORT]: upstream `echo` on ECHO_PORT, and
# upstream `second` on SECOND_PORT when given. Written to a temporary file renamed over FILE,
# the way editors save.
write_reload_upstreams() {
  local file=$1
  {
    echo "echo:"
    echo "  prefixes: [echo]"
    echo "  backends: [http://127.0.0.1:$2]"
    if [[ -n ${3:-} ]]; then
      echo "second:"
      echo "  prefixes: [second]"
      echo "  backends: [http://127.0.0.1:$3]"
    fi
  } >"$file.tmp"
  mv "$file.tmp" "$file"
}

@test "static-upstreams: changes to the file apply; a bad file keeps the last good state" {
  start_backends b0 b1
  write_reload_upstreams "$UPSTREAMS" "${BACKEND_PORTS[0]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  [ "$(echoed_backend "$GK_URL/echo/x")" = b0 ]
  [ "$(http_code "$GK_URL/second/x")" = 404 ]
  pid=$(plugin_pid static-upstreams)

  # A second upstream, and the first one's backend changed.
  write_reload_upstreams "$UPSTREAMS" "${BACKEND_PORTS[1]}" "${BACKEND_PORTS[0]}"
  eventually 50 '[ "$(http_code "$GK_URL/second/x")" = 200 ]'
  eventually 50 '[ "$(echoed_backend "$GK_URL/echo/x")" = b1 ]'
  for i in $(seq 1 10); do
    [ "$(echoed_backend "$GK_URL/echo/$i")" = b1 ]
  done
  [ "$(echoed_backend "$GK_URL/second/x")" = b0 ]

  # A file that does not parse (written in place): routes keep working, the log has the line.
  printf 'echo:\n  prefixes: [echo\n  backends: []\n' >"$UPSTREAMS"
  wait_for_log 'keeping the last good state.*line [0-9]+.*plugin=static-upstreams'
  sleep 0.5
  [ "$(echoed_backend "$GK_URL/echo/x")" = b1 ]
  [ "$(http_code "$GK_URL/second/x")" = 200 ]

  # Fixed: changes apply again (second removed, echo back on b0).
  write_reload_upstreams "$UPSTREAMS" "${BACKEND_PORTS[0]}"
  eventually 50 '[ "$(http_code "$GK_URL/second/x")" = 404 ]'
  eventually 50 '[ "$(echoed_backend "$GK_URL/echo/x")" = b0 ]'
  # All of it without a restart of the plugin.
  [ "$(plugin_pid static-upstreams)" = "$pid" ]
}

@test "static-upstreams: restarted after its file changed, it replaces what the proxy still holds" {
  start_backends b0
  write_reload_upstreams "$UPSTREAMS" "${BACKEND_PORTS[0]}"
  start_gatekeeper --upstream-plugin static-upstreams --upstream-file "$UPSTREAMS"
  [ "$(http_code "$GK_URL/echo/x")" = 200 ]
  pid=$(plugin_pid static-upstreams)
  # Changed while the plugin cannot watch the file, then the plugin dies.
  kill -STOP "$pid"
  sed -i 's/prefixes: \[echo\]/prefixes: [moved]/' "$UPSTREAMS"
  kill -9 "$pid"
  wait_for_restart static-upstreams "$pid" >/dev/null
  eventually 50 '[ "$(http_code "$GK_URL/moved/x")" = 200 ]'
  [ "$(http_code "$GK_URL/echo/x")" = 404 ]
  ! gk_log | grep -q "plugin restart failed" || false
}
