//! Entry points for the fuzz targets (`fuzz/`, `crates/fuzz-targets`): the private request
//! checks, reachable from outside the crate. Not part of the API; nothing else may use it.

use http::request::Parts;

/// Runs the request checks on a request head, as both request paths do first
/// ([`crate::request_checks`]): `Err` with the rejection's reason when the request is refused.
pub fn check_request(parts: &mut Parts) -> Result<(), &'static str> {
    crate::request_checks::check_request(parts).map_err(|rejection| rejection.reason())
}

/// The path without its dot segments, or `None` when it has none
/// ([`crate::request_checks`]'s `remove_dot_segments`).
pub fn remove_dot_segments(path: &str) -> Option<String> {
    crate::request_checks::remove_dot_segments(path)
}
