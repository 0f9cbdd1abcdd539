# Sourced by limits.bats: parked_count PORT prints gatekeeper_connections_parked (summed over
# listeners) from the /metrics endpoint on PORT.
parked_count() {
  curl -sS --max-time 5 "http://127.0.0.1:$1/metrics" |
    awk '/^gatekeeper_connections_parked/ {sum += $2} END {print sum + 0}'
}
