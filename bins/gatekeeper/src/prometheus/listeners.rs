//! The per-listener families, read at scrape time from the pipeline's connection counters:
//! connections open, parked and accepted, failed TLS handshakes, malformed requests, bytes, and
//! what the per-client limits refused (`gatekeeper_client_limited_total{listener,limit}`).

use gatekeeper_proxy::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of per-listener metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

/// Labels of `gatekeeper_client_limited_total`: the listener and the limit (`connections`:
/// `max_connections_per_client`; `rate`: `client_request_rate`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLimitLabels {
    listener: String,
    limit: &'static str,
}

/// The listeners' connection counters, as the pipeline has them now.
pub(super) fn register(registry: &mut Registry, metrics: &Metrics) {
    let open = Family::<ListenerLabels, Gauge>::default();
    registry.register(
        "gatekeeper_connections_open",
        "Client connections open now (TLS handshakes under way included)",
        open.clone(),
    );
    let parked = Family::<ListenerLabels, Gauge>::default();
    registry.register(
        "gatekeeper_connections_parked",
        "Of the open client connections, those waiting for their next bytes without HTTP state or buffers (new ones before their first bytes; idle HTTP/1 ones after keepalive_release_after)",
        parked.clone(),
    );
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<ListenerLabels, Counter>::default();
        registry.register(name, help, family.clone());
        family
    };
    let accepted = counter(
        registry,
        "gatekeeper_connections",
        "Client connections accepted",
    );
    let handshakes = counter(
        registry,
        "gatekeeper_tls_handshake_failures",
        "TLS handshakes with clients that failed or timed out",
    );
    let malformed = counter(
        registry,
        "gatekeeper_malformed_requests",
        "Requests refused on the connection before any handler ran: malformed (400), URI or head too large (414, 431), head not in time (408)",
    );
    let received = counter(
        registry,
        "gatekeeper_received_bytes",
        "Bytes read from clients (after TLS decryption), request heads included",
    );
    let sent = counter(
        registry,
        "gatekeeper_sent_bytes",
        "Bytes written to clients (before TLS encryption), response heads included",
    );
    let client_limited = Family::<ClientLimitLabels, Counter>::default();
    registry.register(
        "gatekeeper_client_limited",
        "Refused by the per-client limits, before any plugin: connections closed at accept (limit=\"connections\", max_connections_per_client) and requests answered 429 (limit=\"rate\", client_request_rate)",
        client_limited.clone(),
    );
    for (listener, stats) in metrics.listener_stats() {
        for (limit, count) in [
            ("connections", stats.client_limited_connections),
            ("rate", stats.client_limited_requests),
        ] {
            let labels = ClientLimitLabels {
                listener: listener.clone(),
                limit,
            };
            client_limited.get_or_create(&labels).inc_by(count);
        }
        let labels = ListenerLabels { listener };
        open.get_or_create(&labels)
            .set(i64::try_from(stats.open_connections).unwrap_or(i64::MAX));
        parked
            .get_or_create(&labels)
            .set(i64::try_from(stats.parked_connections).unwrap_or(i64::MAX));
        accepted.get_or_create(&labels).inc_by(stats.connections);
        handshakes
            .get_or_create(&labels)
            .inc_by(stats.tls_handshake_failures);
        malformed
            .get_or_create(&labels)
            .inc_by(stats.malformed_requests);
        received.get_or_create(&labels).inc_by(stats.bytes_received);
        sent.get_or_create(&labels).inc_by(stats.bytes_sent);
    }
}
