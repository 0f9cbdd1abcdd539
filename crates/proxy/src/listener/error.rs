//! [`ListenerError`]: why a listener set was not applied (at startup or on reload).

use std::net::SocketAddr;

use crate::tls::TlsError;

/// Why [`ListenerControl::apply`](super::ListenerControl::apply) did not apply a listener set. Every variant but
/// [`ListenerError::Rebind`] means nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The new set has no listeners.
    #[error("no listeners configured")]
    NoListeners,
    /// Two listeners of the new set have the same name.
    #[error("duplicate listener name `{0}`")]
    DuplicateListener(String),
    /// A certificate or key of the new set cannot be used, or certificates are given for a
    /// listener that is not in the set.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A new address could not be bound; nothing changed.
    #[error("cannot listen on {addr} (listener `{name}`): {source}; the listeners did not change")]
    Bind {
        /// The listener.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The cause (e.g. address in use).
        #[source]
        source: std::io::Error,
    },
    /// An address given up by a removed or changed listener could not be bound after that
    /// listener was closed. The listeners closed for it were bound again at their old address
    /// (`restored`: they serve again, their previous connections drain) or could not be
    /// (`lost`: they no longer serve until the next successful reload or a restart). Nothing
    /// else changed.
    #[error(
        "cannot listen on {addr} (listener `{name}`): {source}; the old listeners stay, {}",
        describe_restore(restored, lost)
    )]
    Rebind {
        /// The listener.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
        /// Listeners closed to free an address and bound again at their old address.
        restored: Vec<String>,
        /// Listeners closed to free an address that could not be bound again.
        lost: Vec<String>,
    },
    /// The proxy is shutting down (or stopped serving); nothing changed.
    #[error("the proxy is shutting down; the listeners were not changed")]
    ShuttingDown,
}

fn describe_restore(restored: &[String], lost: &[String]) -> String {
    let mut parts = Vec::new();
    if !restored.is_empty() {
        parts.push(format!(
            "listeners closed to free the address and bound again: {}",
            restored.join(", ")
        ));
    }
    if !lost.is_empty() {
        parts.push(format!(
            "listeners closed to free the address that could NOT be bound again (not serving): {}",
            lost.join(", ")
        ));
    }
    match parts.is_empty() {
        true => "no listener was closed".into(),
        false => parts.join("; "),
    }
}
