//! Newline-delimited framing: one compact JSON object per `\n`-terminated line, with a maximum
//! line length so a peer can never make the other side buffer without bound.

use tokio_util::codec::LinesCodec;

/// Default maximum line length: 16 MiB. Longer lines end the connection.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A line codec that rejects lines longer than `max_line_bytes` (excluding the `\n`).
///
/// tokio-util's codec stops buffering as soon as a line passes the limit, so an oversized line
/// costs at most `max_line_bytes` of memory before the error.
pub fn codec(max_line_bytes: usize) -> LinesCodec {
    LinesCodec::new_with_max_length(max_line_bytes)
}
