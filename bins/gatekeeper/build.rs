//! Build script: names the git commit gatekeeper is built from, for `gatekeeper --version`.
//!
//! Sets `GATEKEEPER_COMMIT` to `GATEKEEPER_BUILD_COMMIT` when that is set (a packager building
//! from a tarball names the commit), else to `git rev-parse --short HEAD` when the workspace is a
//! git checkout (a worktree too) and git is there, else to `unknown` (e.g. built from a
//! tarball). Asks cargo to run it again when HEAD moves: `HEAD` itself and the branch ref it
//! points to (loose or packed) are watched.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GATEKEEPER_BUILD_COMMIT");
    let commit = match std::env::var("GATEKEEPER_BUILD_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=GATEKEEPER_COMMIT={commit}");
}

/// The short hash of HEAD, when the workspace is the top of a git checkout; watches the files
/// that change when HEAD moves.
fn git_commit() -> Option<String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // bins/gatekeeper → the workspace root.
    let workspace = manifest_dir.parent()?.parent()?.canonicalize().ok()?;
    // Only this workspace's own repository: not one it happens to be unpacked inside.
    let top = git(&workspace, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != workspace {
        return None;
    }
    let git_dir = absolute(&workspace, &git(&workspace, &["rev-parse", "--git-dir"])?);
    let common_dir = absolute(
        &workspace,
        &git(&workspace, &["rev-parse", "--git-common-dir"])?,
    );
    watch(&git_dir.join("HEAD"));
    if let Some(reference) = git(&workspace, &["symbolic-ref", "-q", "HEAD"]) {
        watch(&git_dir.join(&reference));
        watch(&common_dir.join(&reference));
    }
    watch(&common_dir.join("packed-refs"));
    git(&workspace, &["rev-parse", "--short", "HEAD"])
}

/// Asks cargo to rerun the build script when `path` changes (only if it exists: cargo reruns
/// every time for a path that does not).
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `path` as git printed it (relative to `dir` or absolute), made absolute.
fn absolute(dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        dir.join(path)
    }
}

/// The trimmed stdout of `git ARGS` run in `dir`, if git ran and succeeded with some output.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
