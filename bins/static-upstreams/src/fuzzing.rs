//! Entry points for the fuzz targets (`fuzz/`, `crates/fuzz-targets`): the upstreams file
//! parser. Not part of the API; nothing else may use it.

use crate::file::{desired, parse, BackendIds};

/// Parses an upstreams file's text with both kinds of backend ids, as the plugin does at start
/// and on each change, and builds the batch it would push; returns how many upstreams parsed
/// (with `url` ids), or the parse error.
pub fn parse_upstreams(text: &str) -> Result<usize, String> {
    if let Ok(upstreams) = parse(text, BackendIds::Index) {
        let _ = desired(upstreams);
    }
    let upstreams = parse(text, BackendIds::Url).map_err(|e| e.to_string())?;
    let count = upstreams.len();
    let _ = desired(upstreams);
    Ok(count)
}
