//! The environment variables the proxy sets when it spawns a plugin process.

/// Path of the Unix socket the plugin connects to.
pub const SOCKET: &str = "GATEKEEPER_SOCKET";
/// One-time token the plugin sends back in its `handshake` call.
pub const TOKEN: &str = "GATEKEEPER_TOKEN";
/// The plugin's configured name (unique within one gatekeeper).
pub const PLUGIN_NAME: &str = "GATEKEEPER_PLUGIN_NAME";
/// The plugin's type: `upstream`, `modifier`, `router`, `loadbalancer` or `metric`.
pub const PLUGIN_TYPE: &str = "GATEKEEPER_PLUGIN_TYPE";
/// The protocol version the proxy speaks, as a decimal integer.
pub const PROTOCOL_VERSION: &str = "GATEKEEPER_PROTOCOL_VERSION";
/// The maximum line length in bytes the proxy accepts, as a decimal integer.
pub const MAX_LINE_BYTES: &str = "GATEKEEPER_MAX_LINE_BYTES";
/// Which instance of the plugin this process is, as a decimal integer from 0, when the plugin
/// runs several processes (`instances = N`); `0` for a plugin with one. Every instance gets the
/// same name, type and config.
pub const PLUGIN_INSTANCE: &str = "GATEKEEPER_PLUGIN_INSTANCE";
/// The low-latency mode's budget, in microseconds, as a decimal integer (`0`: off): how long the
/// plugin may busy-poll its socket instead of sleeping right after it answered, waiting for
/// the next request (the plugin's `busy_poll_us`). Optional: a plugin may ignore it.
pub const BUSY_POLL_US: &str = "GATEKEEPER_BUSY_POLL_US";
