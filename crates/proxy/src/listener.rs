//! The listeners: which exist, binding them (with the TLS setup of TLS listeners), their accept
//! loops, serving each connection, and graceful shutdown.
//!
//! - [`plan`]: the pure part. From the listeners there are and the listeners wanted, what to
//!   do with each: keep (re-reading its certificates), bind, rebind, close. Startup is the plan
//!   from an empty set; a reload is the plan from the present set. Unit-tested without sockets.
//! - [`control`]: [`ListenerControl`] owns the set (configured name and address, bound socket,
//!   TLS setup) and executes a plan ([`ListenerControl::apply`], what a configuration reload
//!   asks for): unchanged listeners keep their socket and connections, added ones are bound and
//!   start, removed ones close and drain, changed ones are rebound.
//! - [`accept`]: one listener's accept loop, at most `max_connections` connections at once over
//!   all listeners, and the drain of its connections when it stops.
//! - [`connection`]: one client connection (TLS handshake, HTTP/1.1 or HTTP/2), with
//!   `watched_io` (its timers), `activity` (its requests as the timers see them), `http1` (the
//!   HTTP/1 driver that parks idle connections without buffers) and `prefixed`.
//! - [`proxy`]: [`BoundProxy`], from binding to the end of shutdown.
//!
//! Every listener's accept loop runs as its own task in a set that
//! [`BoundProxy::serve`] owns; `apply` hands the loops of new listeners to it over a channel,
//! and stops a listener through the listener's own stop signal (the one its connections watch
//! for a graceful close). When `serve`'s shutdown fires, every listener gets that signal and
//! `serve` waits for all loops, removed ones still draining included.
//!
//! Order of execution of a plan (so that a failed reload changes as little as possible):
//!
//! 1. certificate files of every TLS listener of the new set are loaded; a bad file changes
//!    nothing;
//! 2. listeners on addresses that no removed or changed listener holds are bound (at startup,
//!    a socket passed by systemd is used instead); a failure (address in use) changes nothing;
//! 3. the removed or changed listeners holding an address still needed are closed, and those
//!    addresses bound; if one fails, the closed listeners are bound again at their old
//!    addresses (their connections drain anyway) and the error says which came back;
//! 4. commit: kept TLS listeners get their new certificates, new and rebound listeners start,
//!    removed ones (and the old sockets of rebound ones) stop accepting and drain.
//!
//! Listeners whose socket came from systemd (socket activation) are never closed or rebound
//! here: they keep their socket (and their TLS-ness) and the changes say so in a warning.

mod accept;
mod activity;
mod connection;
mod control;
mod error;
mod http1;
mod plan;
mod prefixed;
mod proxy;
mod tls_connection;
mod watched_io;

pub use control::ListenerControl;
pub use error::ListenerError;
pub use plan::ListenerChanges;
pub(crate) use proxy::bind;
pub use proxy::BoundProxy;
