//! The limiters on their own: who counts as one client, refill and bursts, the bounded table,
//! connection counts given back, the throttled log line.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

fn key(ip: &str) -> ClientKey {
    ClientKey::of(ip.parse::<IpAddr>().unwrap())
}

#[test]
fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
    assert_eq!(key("192.0.2.1"), key("::ffff:192.0.2.1"));
    assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_ne!(key("::1"), key("0.0.0.1"));
}

#[test]
fn a_burst_is_allowed_then_one_request_per_interval() {
    let limiter = RateLimiter::new(10, 3);
    let start = Instant::now();
    let client = key("192.0.2.1");
    for i in 0..3 {
        assert_eq!(
            limiter.check(client, start),
            Ok(()),
            "request {i} of the burst"
        );
    }
    let wait = limiter.check(client, start).unwrap_err();
    assert_eq!(wait, Duration::from_millis(100));
    // Another client has its own bucket.
    assert_eq!(limiter.check(key("192.0.2.2"), start), Ok(()));
    // Refused requests take nothing: after one interval, exactly one more is allowed.
    let later = start + Duration::from_millis(100);
    assert_eq!(limiter.check(client, later), Ok(()));
    assert!(limiter.check(client, later).is_err());
    // After burst/rate seconds of quiet the whole burst is back.
    let rested = later + Duration::from_millis(300);
    for _ in 0..3 {
        assert_eq!(limiter.check(client, rested), Ok(()));
    }
    assert!(limiter.check(client, rested).is_err());
}

#[test]
fn a_steady_client_at_the_rate_is_never_refused() {
    let limiter = RateLimiter::new(100, 1);
    let start = Instant::now();
    let client = key("2001:db8::1");
    for i in 0..1000 {
        let at = start + Duration::from_millis(10 * i);
        assert_eq!(limiter.check(client, at), Ok(()), "request {i}");
    }
}

#[test]
fn the_table_is_bounded_and_forgets_the_least_recently_seen() {
    let limiter = RateLimiter::with_capacity(1, 1, 64);
    let now = Instant::now();
    let first = key("10.0.0.1");
    assert_eq!(limiter.check(first, now), Ok(()));
    assert!(limiter.check(first, now).is_err());
    for i in 0..100_000u32 {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        let _ = limiter.check(ClientKey::of(ip), now);
        assert!(limiter.clients() <= 64, "after {i} clients");
    }
    // The first client was forgotten: it starts again with a full bucket.
    assert_eq!(limiter.check(first, now), Ok(()));
}

#[test]
fn connections_per_client_are_counted_until_closed() {
    let limiter = Arc::new(ConnectionLimiter::new(2));
    let (a, b) = (key("192.0.2.1"), key("192.0.2.2"));
    let first = limiter.open(a).unwrap();
    let second = limiter.open(a).unwrap();
    assert!(
        limiter.open(a).is_none(),
        "a third connection of a is refused"
    );
    let other = limiter.open(b).unwrap();
    drop(first);
    let third = limiter.open(a).unwrap();
    assert!(limiter.open(a).is_none());
    drop((second, third, other));
    // Clients without a connection take no room.
    assert_eq!(limiter.clients(), 0);
}

#[test]
fn the_limits_are_off_unless_set() {
    let limits = ClientLimits::new(&ProxyConfig::default());
    assert!(limits.connections.is_none() && limits.rate.is_none());
    let config = ProxyConfig {
        max_connections_per_client: 4,
        client_request_rate: 5,
        ..ProxyConfig::default()
    };
    let limits = ClientLimits::new(&config);
    assert!(limits.connections.is_some());
    let rate = limits.rate.unwrap();
    // Burst 0: the burst is the rate.
    let now = Instant::now();
    for _ in 0..5 {
        assert_eq!(rate.check(key("192.0.2.9"), now), Ok(()));
    }
    assert!(rate.check(key("192.0.2.9"), now).is_err());
}

#[test]
fn refusals_are_logged_once_per_interval_with_their_count() {
    let warning = ThrottledWarning::new(Duration::from_secs(10));
    let start = Instant::now();
    assert_eq!(warning.refused(start), Some(1));
    for i in 1..=9 {
        assert_eq!(warning.refused(start + Duration::from_secs(i)), None);
    }
    assert_eq!(warning.refused(start + Duration::from_secs(10)), Some(10));
    assert_eq!(warning.refused(start + Duration::from_secs(11)), None);
}
