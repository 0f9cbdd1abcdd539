//! The listener plan: a pure function ([`plan`]) from the listeners there are ([`Present`]) and
//! the listeners wanted (the configured set and its certificates) to what to do with each
//! ([`Plan`]): keep it (re-reading its certificates), bind it (a new listener, or one whose
//! address or TLS-ness changed), close it, and which leaving listeners must close before an
//! address they hold can be bound again. No socket and no file is touched here: executing the
//! plan is [`ListenerControl`](super::ListenerControl)'s job, at startup (the plan for an empty
//! set binds everything) and at every reload.

use std::net::SocketAddr;

use crate::tls::{TlsCertificate, TlsError};
use crate::ListenerConfig;

use super::ListenerError;

/// What applying a listener set did ([`ListenerControl::apply`](super::ListenerControl::apply)).
/// Names are listener names, in configured order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerChanges {
    /// New listeners, bound and accepting.
    pub added: Vec<String>,
    /// Listeners no longer configured: closed at once, their open connections drain in the
    /// background (asked to close after their in-flight request, closed after the shutdown
    /// grace period).
    pub removed: Vec<String>,
    /// Listeners whose address or TLS-ness changed: bound anew; the old socket's connections
    /// drain like a removed listener's.
    pub rebound: Vec<String>,
    /// Listeners that keep their socket and open connections (TLS ones serve the new
    /// certificate files to new handshakes).
    pub kept: Vec<String>,
    /// How many certificates the TLS listeners of the new set serve, every one read again from
    /// its files.
    pub certificates_reloaded: usize,
    /// What was not applied as configured (listeners with a socket from systemd), one sentence
    /// each.
    pub warnings: Vec<String>,
}

impl ListenerChanges {
    /// Whether no listener was added, removed or rebound (certificates are re-read anyway).
    pub fn same_listeners(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.rebound.is_empty()
    }
}

/// A listener there is, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Present {
    /// Its name.
    pub(crate) name: String,
    /// Its configured address (the port may be 0).
    pub(crate) addr: SocketAddr,
    /// The address its socket is bound to.
    pub(crate) local: SocketAddr,
    /// Whether it serves TLS.
    pub(crate) tls: bool,
    /// Whether its socket came from systemd (socket activation): such a listener is never
    /// closed or rebound.
    pub(crate) adopted: bool,
}

/// What happens to the certificates of a listener that keeps its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Certificates {
    /// Nothing to read: a plain listener, or a systemd-socket TLS listener no longer given
    /// certificates (it keeps its old ones).
    Unchanged,
    /// Read the listener's certificate files again and serve them to new handshakes.
    Reload,
    /// Read the files to report a bad one, but serve none (a systemd-socket plain listener now
    /// given certificates keeps serving plain HTTP).
    CheckOnly,
}

/// What happens to one wanted listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// It keeps its socket and open connections.
    Keep(Certificates),
    /// It gets a new socket (an added listener, or a rebound one), with TLS when `tls`.
    Bind {
        /// Whether it serves TLS (its certificates are read before anything is bound).
        tls: bool,
        /// Whether a leaving listener holds its address: bound only after the listeners in
        /// [`Plan::release`] are closed.
        after_release: bool,
    },
}

/// What to do to go from the present listeners to the wanted ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// One step per wanted listener, in configured order.
    pub(crate) steps: Vec<Step>,
    /// Leaving listeners (removed, or the old socket of a rebound one) to close before the
    /// `after_release` binds, in present order.
    pub(crate) release: Vec<String>,
    /// The changes the plan makes, by name (`certificates_reloaded` is counted as the
    /// certificates are read).
    pub(crate) changes: ListenerChanges,
}

/// The plan from `present` to `wanted` with the certificates `tls` (see the module doc).
/// `wanted` is assumed to have passed [`check`].
pub(crate) fn plan(present: &[Present], wanted: &[ListenerConfig], tls: &[TlsCertificate]) -> Plan {
    let mut changes = ListenerChanges::default();
    let mut steps = Vec::with_capacity(wanted.len());
    for l in wanted {
        let wants_tls = tls.iter().any(|c| c.listener == l.name);
        let step = match present.iter().find(|p| p.name == l.name) {
            Some(old) if old.adopted => {
                if l.addr != old.addr {
                    changes.warnings.push(format!(
                        "listener `{}` keeps the socket passed by systemd ({}); the configured address {} is not bound",
                        l.name, old.local, l.addr
                    ));
                }
                let certificates = match (old.tls, wants_tls) {
                    (true, true) => Certificates::Reload,
                    (true, false) => {
                        changes.warnings.push(format!(
                            "listener `{}` keeps serving TLS with its old certificates (its socket was passed by systemd; turning TLS off needs a restart)",
                            l.name
                        ));
                        Certificates::Unchanged
                    }
                    (false, true) => {
                        changes.warnings.push(format!(
                            "listener `{}` keeps serving plain HTTP (its socket was passed by systemd; turning TLS on needs a restart)",
                            l.name
                        ));
                        Certificates::CheckOnly
                    }
                    (false, false) => Certificates::Unchanged,
                };
                changes.kept.push(l.name.clone());
                Step::Keep(certificates)
            }
            Some(old) if old.addr == l.addr && old.tls == wants_tls => {
                changes.kept.push(l.name.clone());
                Step::Keep(match old.tls {
                    true => Certificates::Reload,
                    false => Certificates::Unchanged,
                })
            }
            old => {
                match old {
                    Some(_) => changes.rebound.push(l.name.clone()),
                    None => changes.added.push(l.name.clone()),
                }
                Step::Bind {
                    tls: wants_tls,
                    after_release: false,
                }
            }
        };
        steps.push(step);
    }
    for p in present {
        if !wanted.iter().any(|l| l.name == p.name) {
            match p.adopted {
                true => changes.warnings.push(format!(
                    "listener `{}` is no longer configured but keeps serving on {} (its socket was passed by systemd) until a restart",
                    p.name, p.local
                )),
                false => changes.removed.push(p.name.clone()),
            }
        }
    }
    // The addresses given up by removed and rebound listeners.
    let leaving: Vec<&Present> = present
        .iter()
        .filter(|p| {
            !p.adopted && (changes.removed.contains(&p.name) || changes.rebound.contains(&p.name))
        })
        .collect();
    let mut needed = Vec::new();
    for (l, step) in wanted.iter().zip(steps.iter_mut()) {
        if let Step::Bind { after_release, .. } = step {
            if leaving.iter().any(|p| overlaps(p.local, l.addr)) {
                *after_release = true;
                needed.push(l.addr);
            }
        }
    }
    let release = leaving
        .iter()
        .filter(|p| needed.iter().any(|&addr| overlaps(p.local, addr)))
        .map(|p| p.name.clone())
        .collect();
    Plan {
        steps,
        release,
        changes,
    }
}

/// Whether listening on `a` keeps `b` from being bound (same port, same or wildcard IP).
pub(crate) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The certificates given for the listener `name`.
pub(crate) fn certificates_of(tls: &[TlsCertificate], name: &str) -> Vec<TlsCertificate> {
    tls.iter().filter(|c| c.listener == name).cloned().collect()
}

/// What every listener set must satisfy (at startup and at each `apply`): some listeners,
/// unique names, certificates only for them.
pub(crate) fn check(
    listeners: &[ListenerConfig],
    tls: &[TlsCertificate],
) -> Result<(), ListenerError> {
    if listeners.is_empty() {
        return Err(ListenerError::NoListeners);
    }
    for (i, l) in listeners.iter().enumerate() {
        if listeners[..i].iter().any(|o| o.name == l.name) {
            return Err(ListenerError::DuplicateListener(l.name.clone()));
        }
    }
    if let Some(unknown) = tls
        .iter()
        .find(|c| !listeners.iter().any(|l| l.name == c.listener))
    {
        return Err(TlsError::UnknownListener(unknown.listener.clone()).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
