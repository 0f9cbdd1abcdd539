//! The gatekeeper wire protocol: JSON-RPC 2.0 messages, one per line, over a Unix socket.
//!
//! This crate owns everything both ends of a plugin connection share and nothing else (no HTTP,
//! no processes):
//!
//! - [`message`]: the JSON-RPC 2.0 message model (request, notification, response, error);
//! - [`framing`]: newline-delimited framing with a maximum line length;
//! - [`busy_poll`]: the opt-in low-latency mode's bounded busy-polling reader;
//! - [`peer`]: a bidirectional, pipelined [`Peer`]: either side calls or notifies the other, many
//!   calls in flight, responses correlated by id, a timeout per call, one batching writer task;
//! - [`methods`]: the protocol table, the one list of methods (name, kind, plugin types, bodies,
//!   params and result types), with [`types`] and [`metrics`] the data they carry;
//! - [`parts`]: the request parts a hook declares it needs, and the partial request sent to it;
//! - [`patch`]: patch results, the changes a modifier hook makes instead of a whole request or
//!   response;
//! - [`dispatch`]: typed dispatch of incoming calls from that table (proxy's manager, Rust SDK);
//! - [`schema`]: the generated machine-readable protocol, `plugin-sdk/protocol.json`;
//! - [`env`](mod@crate::env): the environment variables the proxy sets for a plugin process;
//! - [`warnings`]: the rate limit of warnings about a plugin, for both sides of the port.
//!
//! docs/protocol.md is the human-readable spec of the same protocol and must stay true to this crate.

mod batch;
pub mod busy_poll;
pub mod dispatch;
pub mod env;
pub mod error;
pub mod framing;
pub mod message;
pub mod methods;
pub mod metrics;
mod params;
pub mod parts;
pub mod patch;
pub mod peer;
pub mod schema;
pub mod types;
pub mod warnings;

pub use error::{codes, CallError, ErrorCode, ErrorObject};
pub use message::{Message, RequestId};
pub use methods::Method;
pub use peer::{
    Handler, IncomingNotification, IncomingRequest, Peer, PeerConfig, PeerStats, Reply,
};

/// The protocol version this crate speaks. A plugin declares the version it speaks in its
/// handshake; the proxy refuses any other.
pub const PROTOCOL_VERSION: u32 = 1;
