//! The stable replay CI runs: every fuzz target fed each file of its committed corpus
//! (`fuzz/corpus/<target>/`, which holds the seeds and every crash found, once fixed) and then
//! deterministic mutations of them, for at most [`BUDGET`] and [`MUTATIONS`] inputs per target.
//! A panic names the target and the input (written to `target/fuzz-replay-failure-<target>`
//! so it can be replayed with `cargo +nightly fuzz run <target> <file>`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gatekeeper_fuzz_targets::mutate::Mutator;
use gatekeeper_fuzz_targets::{Target, TARGETS};

/// Wall-clock time for the mutated inputs of one target.
const BUDGET: Duration = Duration::from_millis(1500);
/// At most this many mutated inputs per target.
const MUTATIONS: usize = 5000;
/// The longest mutated input (libFuzzer's default `-max_len` is 4096).
const MAX_LEN: usize = 4096;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Runs `body` on `input`; on a panic, keeps the input and fails naming it.
fn run_one(name: &str, body: fn(&[u8]), input: &[u8], what: &str) {
    if std::panic::catch_unwind(|| body(input)).is_err() {
        let kept = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(format!("fuzz-replay-failure-{name}"));
        let _ = std::fs::write(&kept, input);
        panic!(
            "fuzz target {name} panicked on {what} (kept in {}): {:?}",
            kept.display(),
            String::from_utf8_lossy(input)
        );
    }
}

fn replay(target: &Target) {
    let (name, body) = *target;
    let seeds = corpus(name);
    assert!(!seeds.is_empty(), "no corpus for {name}");
    for (i, seed) in seeds.iter().enumerate() {
        run_one(name, body, seed, &format!("corpus file #{i}"));
    }
    let mut mutator = Mutator::new(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let started = Instant::now();
    let mut count = 0;
    while count < MUTATIONS && started.elapsed() < BUDGET {
        let base = &seeds[count % seeds.len()];
        let other = &seeds[(count / seeds.len() + 1) % seeds.len()];
        let input = mutator.mutate(base, other, MAX_LEN);
        run_one(name, body, &input, &format!("mutated input #{count}"));
        count += 1;
    }
    println!(
        "{name}: {} corpus files, {count} mutated inputs",
        seeds.len()
    );
}

/// One test per target, so they run in parallel and fail on their own.
macro_rules! replay_tests {
    ($($name:ident),+) => {$(
        #[test]
        fn $name() {
            let target = TARGETS
                .iter()
                .find(|(name, _)| *name == stringify!($name))
                .unwrap_or_else(|| panic!("no target {}", stringify!($name)));
            replay(target);
        }
    )+};
}

replay_tests!(
    rpc_framing,
    rpc_method,
    request_checks,
    config_toml,
    upstreams_yaml,
    admin_http
);

#[test]
fn every_target_has_a_replay_test_and_a_fuzz_target_file() {
    assert_eq!(
        TARGETS.len(),
        6,
        "add the new target to replay_tests! above"
    );
    for (name, _) in TARGETS {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}
