//! Executing a listener plan: reading certificates, binding (or adopting systemd's sockets),
//! closing the listeners whose address is needed and restoring them when a bind fails, and the
//! commit that makes the new set current. The order is in the [listener module doc](crate::listener).

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{Entry, ListenerControl, Phase, Socket};
use crate::listener::plan::{
    self, certificates_of, check, Certificates, ListenerChanges, Plan, Step,
};
use crate::listener::ListenerError;
use crate::tls::{CertificateSwap, TlsListener};
use crate::{ListenerConfig, TlsCertificate};

/// A new socket of a `Bind` step.
struct NewSocket {
    listener: TcpListener,
    /// Passed by systemd rather than bound here.
    adopted: bool,
}

/// A step of the plan with what it needs read or bound.
enum Prepared {
    /// Keeps the socket; swaps in the certificates, if any.
    Keep(Option<CertificateSwap>),
    /// A new socket (`None` until bound).
    Bind {
        tls: Option<TlsListener>,
        after_release: bool,
        socket: Option<NewSocket>,
    },
}

impl ListenerControl {
    /// Plans the change from the present set to `listeners` and executes it: certificates
    /// first, then the free addresses, then the addresses leaving listeners hold, then the
    /// commit.
    pub(super) async fn reconcile(
        &self,
        listeners: Vec<ListenerConfig>,
        tls: Vec<TlsCertificate>,
        mut given: Vec<(String, std::net::TcpListener)>,
    ) -> Result<ListenerChanges, ListenerError> {
        let _one_at_a_time = self.inner.applying.lock().await;
        check(&listeners, &tls)?;
        let (present, present_tls): (Vec<plan::Present>, Vec<Option<TlsListener>>) = {
            let state = self.inner.lock();
            if matches!(state.phase, Phase::Stopped) {
                return Err(ListenerError::ShuttingDown);
            }
            state
                .entries
                .iter()
                .map(|e| (e.present(), e.tls.clone()))
                .unzip()
        };
        let Plan {
            steps,
            release,
            mut changes,
        } = plan::plan(&present, &listeners, &tls);

        // Read every certificate: a bad file changes nothing.
        let mut prepared = Vec::with_capacity(steps.len());
        for (l, step) in listeners.iter().zip(steps) {
            let files = certificates_of(&tls, &l.name);
            let step = match step {
                Step::Keep(certificates) => {
                    let old_tls = present
                        .iter()
                        .position(|p| p.name == l.name)
                        .and_then(|i| present_tls.get(i)?.as_ref());
                    Prepared::Keep(match (certificates, old_tls) {
                        (Certificates::Reload, Some(old_tls)) => Some(old_tls.prepare(files)?),
                        (Certificates::CheckOnly, _) => {
                            TlsListener::new(&l.name, files)?;
                            None
                        }
                        _ => None,
                    })
                }
                Step::Bind { tls, after_release } => Prepared::Bind {
                    tls: match tls {
                        true => Some(TlsListener::new(&l.name, files)?),
                        false => None,
                    },
                    after_release,
                    socket: None,
                },
            };
            changes.certificates_reloaded += match &step {
                Prepared::Keep(swap) => swap.as_ref().map_or(0, CertificateSwap::len),
                Prepared::Bind { tls, .. } => {
                    tls.as_ref().map_or(0, TlsListener::certificate_count)
                }
            };
            prepared.push(step);
        }

        // Bind the addresses nobody leaving holds: a failure changes nothing.
        for (l, step) in listeners.iter().zip(prepared.iter_mut()) {
            if let Prepared::Bind {
                socket,
                after_release: false,
                ..
            } = step
            {
                let opened = open(l, &mut given)
                    .await
                    .map_err(|source| ListenerError::Bind {
                        name: l.name.clone(),
                        addr: l.addr,
                        source,
                    })?;
                *socket = Some(opened);
            }
        }

        // Close the listeners holding an address still needed, then bind those.
        let waiting = |step: &Prepared| {
            matches!(
                step,
                Prepared::Bind {
                    after_release: true,
                    ..
                }
            )
        };
        if prepared.iter().any(waiting) {
            let released = self.release(&release).await?;
            let mut failed = None;
            for (l, step) in listeners.iter().zip(prepared.iter_mut()) {
                if let Prepared::Bind {
                    socket: socket @ None,
                    after_release: true,
                    ..
                } = step
                {
                    match TcpListener::bind(l.addr).await {
                        Ok(listener) => {
                            *socket = Some(NewSocket {
                                listener,
                                adopted: false,
                            })
                        }
                        Err(source) => {
                            failed = Some((l.name.clone(), l.addr, source));
                            break;
                        }
                    }
                }
            }
            if let Some((name, addr, source)) = failed {
                // The new sockets may hold the old addresses: close them first.
                drop(prepared);
                let (restored, lost) = self.restore(released).await;
                return Err(ListenerError::Rebind {
                    name,
                    addr,
                    source,
                    restored,
                    lost,
                });
            }
        }

        let closing = self.commit(listeners, prepared)?;
        for closed in closing {
            let _ = closed.await;
        }
        Ok(changes)
    }

    /// Takes the listeners `names` out of the set and closes their sockets (their connections
    /// drain); returns them with their positions, for [`restore`](Self::restore).
    async fn release(&self, names: &[String]) -> Result<Vec<(usize, Entry)>, ListenerError> {
        let mut released = Vec::new();
        let mut closing = Vec::new();
        {
            let mut state = self.inner.lock();
            if matches!(state.phase, Phase::Stopped) {
                return Err(ListenerError::ShuttingDown);
            }
            let mut staying = Vec::with_capacity(state.entries.len());
            for (index, mut entry) in std::mem::take(&mut state.entries).into_iter().enumerate() {
                match names.contains(&entry.config.name) {
                    true => {
                        tracing::info!(listener = %entry.config.name, address = %entry.local, "closing the listener to free its address");
                        closing.extend(std::mem::replace(&mut entry.socket, Socket::Closed).stop());
                        released.push((index, entry));
                    }
                    false => staying.push(entry),
                }
            }
            state.entries = staying;
        }
        for closed in closing {
            let _ = closed.await;
        }
        Ok(released)
    }

    /// Binds released listeners again at their old address and puts them back; returns the
    /// names restored and the names that could not be bound.
    async fn restore(&self, released: Vec<(usize, Entry)>) -> (Vec<String>, Vec<String>) {
        let mut restored = Vec::new();
        let mut lost = Vec::new();
        for (index, mut entry) in released {
            let name = entry.config.name.clone();
            match TcpListener::bind(entry.local).await {
                Ok(listener) => {
                    let mut state = self.inner.lock();
                    entry.socket = state.start_or_wait(&name, listener, entry.tls.as_ref());
                    let index = index.min(state.entries.len());
                    state.entries.insert(index, entry);
                    restored.push(name);
                }
                Err(error) => {
                    tracing::error!(listener = %name, address = %entry.local, %error, "cannot bind the listener's old address again: it no longer serves");
                    lost.push(name);
                }
            }
        }
        (restored, lost)
    }

    /// Makes the new set current: swaps certificates, starts new sockets, stops the rest.
    /// Returns what completes once the stopped sockets are closed.
    fn commit(
        &self,
        listeners: Vec<ListenerConfig>,
        prepared: Vec<Prepared>,
    ) -> Result<Vec<oneshot::Receiver<()>>, ListenerError> {
        let mut state = self.inner.lock();
        if matches!(state.phase, Phase::Stopped) {
            return Err(ListenerError::ShuttingDown);
        }
        let mut old = std::mem::take(&mut state.entries);
        let mut entries = Vec::with_capacity(listeners.len());
        let mut closing = Vec::new();
        for (l, step) in listeners.into_iter().zip(prepared) {
            let previous = old
                .iter()
                .position(|e| e.config.name == l.name)
                .map(|i| old.remove(i));
            match (step, previous) {
                (Prepared::Keep(swap), Some(mut entry)) => {
                    if let Some(swap) = swap {
                        swap.apply();
                    }
                    if !entry.adopted {
                        entry.config = l;
                    }
                    entries.push(entry);
                }
                (
                    Prepared::Bind {
                        tls,
                        socket: Some(NewSocket { listener, adopted }),
                        ..
                    },
                    previous,
                ) => {
                    if let Some(previous) = previous {
                        closing.extend(previous.socket.stop());
                    }
                    let local = listener.local_addr().unwrap_or(l.addr);
                    let socket = state.start_or_wait(&l.name, listener, tls.as_ref());
                    entries.push(Entry {
                        config: l,
                        local,
                        tls,
                        adopted,
                        socket,
                    });
                }
                // Not reached: kept listeners stay in the set while `apply` runs (one at a
                // time), and every new socket is bound before the commit.
                (_, previous) => {
                    tracing::error!(listener = %l.name, "listener lost while applying the listener set");
                    if let Some(previous) = previous {
                        closing.extend(previous.socket.stop());
                    }
                }
            }
        }
        for entry in old {
            match entry.adopted {
                true => entries.push(entry),
                false => closing.extend(entry.socket.stop()),
            }
        }
        state.entries = entries;
        Ok(closing)
    }
}

/// The socket of a new listener: the one systemd passed for its name, if any, else its address
/// bound here.
async fn open(
    listener: &ListenerConfig,
    given: &mut Vec<(String, std::net::TcpListener)>,
) -> std::io::Result<NewSocket> {
    match given.iter().position(|(name, _)| *name == listener.name) {
        Some(i) => {
            let socket = given.swap_remove(i).1;
            socket.set_nonblocking(true)?;
            Ok(NewSocket {
                listener: TcpListener::from_std(socket)?,
                adopted: true,
            })
        }
        None => Ok(NewSocket {
            listener: TcpListener::bind(listener.addr).await?,
            adopted: false,
        }),
    }
}
