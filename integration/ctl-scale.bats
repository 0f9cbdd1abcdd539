#!/usr/bin/env bats
# `gatekeeper ctl upstreams|backends` at size (docs/operations.md, "Large registries: filters and
# paging"): 2,500 upstreams pushed by static-upstreams; pages of --limit N with a `next` cursor
# that, followed, lists every upstream exactly once; --upstream and --prefix filters; the
# default list cut at 1,000 with the cursor on stderr and in the Gatekeeper-Next header.

load helpers

COUNT=2500

setup() {
  start_backend b0
  UPSTREAMS="$BATS_TEST_TMPDIR/upstreams.yml"
  # svc00000 .. svc02499, each with prefix = its id and two backends ("0" and "1").
  awk -v n="$COUNT" -v port="$BACKEND_PORT" 'BEGIN {
    for (i = 0; i < n; i++) {
      id = sprintf("svc%05d", i)
      printf "%s:\n  prefixes: [%s]\n  backends:\n", id, id
      printf "    - http://127.0.0.1:%d\n    - http://localhost:%d\n", port, port
    }
  }' >"$UPSTREAMS"
  cat >"$BATS_TEST_TMPDIR/gk.toml" <<TOML
$(static_upstreams_table 'backend_ids = "index"')
TOML
  start_gatekeeper --config "$BATS_TEST_TMPDIR/gk.toml"
  eventually 300 "[ \"\$(ctl status | jq .upstreams)\" = $COUNT ]"
}

teardown() {
  stop_all
}

# ctl ARGS...: gatekeeper ctl for the gatekeeper of this test (found by its --socket-dir).
ctl() {
  gatekeeper ctl --socket-dir "$BATS_TEST_TMPDIR" "$@"
}

@test "ctl upstreams --limit pages through every upstream exactly once" {
  run ctl upstreams --limit 1000
  [ "$status" -eq 0 ]
  [ "$(jq '.upstreams | length' <<<"$output")" = 1000 ]
  [ "$(jq -r .next <<<"$output")" = svc00999 ]
  local ids="$BATS_TEST_TMPDIR/ids" after="" pages=0 page
  : >"$ids"
  while :; do
    page=$(ctl upstreams --limit 1000 ${after:+--after "$after"})
    jq -r '.upstreams[].id' <<<"$page" >>"$ids"
    pages=$((pages + 1))
    after=$(jq -r '.next // empty' <<<"$page")
    [ -n "$after" ] || break
    [ "$pages" -lt 10 ]
  done
  [ "$pages" = 3 ]
  [ "$(wc -l <"$ids")" = "$COUNT" ]
  [ "$(sort -u "$ids" | wc -l)" = "$COUNT" ]
  [ "$(head -1 "$ids")" = svc00000 ]
  [ "$(tail -1 "$ids")" = svc02499 ]
}

@test "ctl upstreams --upstream ID and --prefix P return that upstream only" {
  run ctl upstreams --upstream svc01234
  [ "$status" -eq 0 ]
  [ "$(jq -c '[.[].id]' <<<"$output")" = '["svc01234"]' ]
  [ "$(jq -c '[.[0].backends[].id]' <<<"$output")" = '["0","1"]' ]
  [ "$(ctl upstreams --prefix svc00042 | jq -c '[.[].id]')" = '["svc00042"]' ]
  [ "$(ctl upstreams --upstream nope | jq length)" = 0 ]
}

@test "ctl backends --upstream ID returns its backends only, and backends page too" {
  run ctl backends --upstream svc01234
  [ "$status" -eq 0 ]
  [ "$(jq -r '[.[] | "\(.upstream)/\(.id)"] | join(" ")' <<<"$output")" = "svc01234/0 svc01234/1" ]
  # Pages of 3 backends cross upstreams: 2 of svc00000, 1 of svc00001, then the rest.
  run ctl backends --limit 3
  [ "$(jq -r '[.backends[] | "\(.upstream)/\(.id)"] | join(" ")' <<<"$output")" = "svc00000/0 svc00000/1 svc00001/0" ]
  [ "$(jq -r .next <<<"$output")" = svc00001/0 ]
  run ctl backends --limit 3 --after svc00001/0
  [ "$(jq -r '[.backends[] | "\(.upstream)/\(.id)"] | join(" ")' <<<"$output")" = "svc00001/1 svc00002/0 svc00002/1" ]
  # The last page says so.
  [ "$(ctl backends --after svc02499/0 | jq -c '[.backends[].id, .next]')" = '["1",null]' ]
}

@test "without --limit the list is cut at 1000, the cursor on stderr and in a header" {
  ctl upstreams >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err"
  [ "$(jq 'length' "$BATS_TEST_TMPDIR/out")" = 1000 ]
  grep -q "more follow: add --limit N --after svc00999" "$BATS_TEST_TMPDIR/err"
  curl -sS --max-time 5 --unix-socket "$BATS_TEST_TMPDIR/admin.sock" -D "$BATS_TEST_TMPDIR/headers" \
    -o /dev/null "http://gatekeeper/backends"
  [ "$(response_header "$BATS_TEST_TMPDIR/headers" gatekeeper-next)" = svc00499/1 ]
  # --table prints a page's rows, the cursor on stderr.
  ctl --table upstreams --limit 2 >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err"
  [ "$(wc -l <"$BATS_TEST_TMPDIR/out")" = 3 ]
  [ "$(awk 'NR == 1 { print $1 } NR > 1 { print $1 }' "$BATS_TEST_TMPDIR/out" | paste -sd ' ')" = "ID svc00000 svc00001" ]
  grep -q "more follow: --after svc00001" "$BATS_TEST_TMPDIR/err"
  # A bad parameter is refused, naming it.
  run ctl upstreams --limit 0
  [ "$status" -eq 1 ]
  grep -q "limit: \`0\` must be a number from 1 to 10000" <<<"$output"
}
