#!/usr/bin/env bash
# Fuzzing (issue 18): runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60) with
# `cargo +nightly fuzz run` (libFuzzer, AddressSanitizer), one after the other, installing
# cargo-fuzz first when it is missing. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target starts from its committed seeds (fuzz/corpus/TARGET/, read only) and from what
# earlier runs found (fuzz/target/corpus/TARGET/, where libFuzzer writes new inputs; not
# committed). Prints per target libFuzzer's last status line (cov: edges covered, ft: features,
# corp: inputs kept, exec/s) and a summary table. A crash, a leak, a timeout (10 s for one input)
# or an out-of-memory (2 GB) fails the target: its input is kept under fuzz/artifacts/TARGET/,
# and the script exits 1 after running the other targets. To replay one:
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…
# then add the input to fuzz/corpus/TARGET/ and a unit test in the crate owning the code.
# CI does not run this (nightly, minutes of build): it replays the same targets on stable, see
# crates/fuzz-targets/tests/replay.rs and docs/dataplane.md, "Fuzzing". Not run by
# scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd fuzz
if (($#)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "==> building ${#targets[@]} targets (nightly, AddressSanitizer)"
cargo +nightly fuzz build

failed=()
summary=()
for target in "${targets[@]}"; do
  echo
  echo "==> $target: ${seconds}s"
  mkdir -p "target/corpus/$target"
  log="target/fuzz-$target.log"
  status=0
  cargo +nightly fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  # libFuzzer's last status line: `#RUNS DONE cov: N ft: N corp: N/SIZE ... exec/s: N rss: …`.
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
  execs=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n 1)
  echo "$last"
  if ((status != 0)); then
    echo "!! $target failed (exit $status); log: fuzz/$log; inputs: fuzz/artifacts/$target/"
    grep -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|Test unit written' "$log" | head -n 5 || true
    failed+=("$target")
  fi
  summary+=("$(printf '%-16s %10s %8s %8s %8s %8s  %s' "$target" "${runs:-?}" "${execs:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$([[ $status == 0 ]] && echo ok || echo FAILED)")")
done

echo
printf '%-16s %10s %8s %8s %8s %8s  %s\n' target runs exec/s cov ft corpus result
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
