//! systemd socket activation: the listening sockets systemd passes (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`), matched to the configured listeners, which then serve them instead of
//! binding their addresses.

use std::net::TcpListener;

use gatekeeper_proxy::ListenerConfig;

/// The passed sockets, each with the listener it belongs to: by name where `LISTEN_FDNAMES`
/// names a configured listener (`FileDescriptorName=` in the .socket unit), else in order (the
/// first unnamed socket to the first listener without one, and so on). Sockets that are not
/// TCP listeners, or that are left over, are logged and closed. Empty when systemd passed none.
pub fn passed_sockets(listeners: &[ListenerConfig]) -> Vec<(String, TcpListener)> {
    let mut passed = listenfd::ListenFd::from_env();
    let count = passed.len();
    if count == 0 {
        return Vec::new();
    }
    let names: Vec<String> = match std::env::var("LISTEN_FDNAMES") {
        Ok(names) if names.split(':').count() == count => {
            names.split(':').map(str::to_owned).collect()
        }
        _ => vec![String::new(); count],
    };
    let mut sockets: Vec<(Option<String>, TcpListener)> = Vec::with_capacity(count);
    for (index, name) in names.into_iter().enumerate() {
        match passed.take_tcp_listener(index) {
            Ok(Some(socket)) => {
                let named = listeners.iter().any(|l| l.name == name);
                sockets.push((named.then_some(name), socket));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(fd = index + 3, error = %e, "ignoring a socket passed by systemd")
            }
        }
    }
    assign(listeners, sockets)
}

/// Gives named sockets to their listeners, then the unnamed ones in order to the listeners
/// left.
fn assign<S>(listeners: &[ListenerConfig], sockets: Vec<(Option<String>, S)>) -> Vec<(String, S)> {
    let mut assigned: Vec<(String, S)> = Vec::with_capacity(sockets.len());
    let mut unnamed = Vec::new();
    for (name, socket) in sockets {
        match name {
            Some(name) if !assigned.iter().any(|(n, _)| *n == name) => {
                assigned.push((name, socket))
            }
            _ => unnamed.push(socket),
        }
    }
    let mut free = listeners
        .iter()
        .filter(|l| !assigned.iter().any(|(n, _)| *n == l.name))
        .map(|l| l.name.clone())
        .collect::<Vec<_>>()
        .into_iter();
    for socket in unnamed {
        match free.next() {
            Some(name) => assigned.push((name, socket)),
            None => {
                tracing::warn!(
                    "systemd passed more sockets than there are listeners; closing the rest"
                )
            }
        }
    }
    for (name, _) in &assigned {
        tracing::info!(listener = %name, "serving a socket passed by systemd");
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(name: &str) -> ListenerConfig {
        ListenerConfig {
            name: name.to_owned(),
            addr: ([127, 0, 0, 1], 0).into(),
        }
    }

    #[test]
    fn names_win_then_order_fills_the_rest() {
        let listeners = [listener("a"), listener("b"), listener("c")];
        let sockets = vec![(None, 1), (Some("c".to_owned()), 2), (None, 3), (None, 4)];
        let assigned = assign(&listeners, sockets);
        assert_eq!(
            assigned,
            vec![
                ("c".to_owned(), 2),
                ("a".to_owned(), 1),
                ("b".to_owned(), 3)
            ]
        );
    }

    #[test]
    fn without_names_sockets_go_in_order() {
        let listeners = [listener("a"), listener("b")];
        let assigned = assign(&listeners, vec![(None, 7)]);
        assert_eq!(assigned, vec![("a".to_owned(), 7)]);
    }
}
