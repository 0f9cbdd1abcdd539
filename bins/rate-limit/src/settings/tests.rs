//! Tests of reading the config map: defaults, every key, the errors, and bucket keys.

use super::*;
use crate::test_support::{config, request};
use serde_json::json;

#[test]
fn config_is_validated() {
    let s = Settings::from_config(&config(&[
        ("key", json!("header:X-Api-Key")),
        ("rate", json!("0.5")),
        ("burst", json!(3)),
        ("max_keys", json!(7)),
    ]))
    .unwrap();
    assert_eq!(s.key, KeySource::Header("x-api-key".into()));
    assert_eq!((s.rate, s.burst, s.max_keys), (0.5, 3.0, 7));
    assert_eq!(
        Settings::from_config(&Object::new()).unwrap(),
        Settings::default()
    );

    for (key, value, needle) in [
        ("key", json!("ip"), "client"),
        ("key", json!("header:"), "client"),
        ("key", json!("header:bad name"), "client"),
        ("key", json!(3), "client"),
        ("rate", json!(0), "positive"),
        ("rate", json!(-1.5), "positive"),
        ("rate", json!("fast"), "number"),
        ("burst", json!(0.5), "at least 1"),
        ("burst", json!(true), "number"),
        ("max_keys", json!(0), "whole number"),
        ("max_keys", json!(2.5), "whole number"),
        ("store", json!("etcd"), "\"memory\" or \"redis\""),
        ("store", json!(1), "\"memory\" or \"redis\""),
        ("redis_url", json!("http://127.0.0.1:6379"), "Redis URL"),
        ("redis_url", json!("not a url"), "Redis URL"),
        ("redis_url", json!(6379), "a string"),
        ("key_prefix", json!(1), "a string"),
        ("redis_timeout", json!("soon"), "duration"),
        ("redis_timeout", json!("0s"), "duration"),
        ("redis_timeout", json!("2m"), "duration"),
        ("redis_timeout", json!(50), "duration"),
        ("redis_retry_interval", json!("-1s"), "duration"),
        (
            "on_store_error",
            json!("fail"),
            "\"open\", \"closed\" or \"local\"",
        ),
        (
            "on_store_error",
            json!(true),
            "\"open\", \"closed\" or \"local\"",
        ),
    ] {
        let err = Settings::from_config(&config(&[(key, value.clone())])).unwrap_err();
        assert!(err.message().contains(needle), "{key}={value}: {err}");
        assert!(err.message().contains(key), "{key}={value}: {err}");
    }
}

#[test]
fn the_redis_store_has_documented_defaults_and_reads_every_key() {
    let defaults = Settings::default();
    assert_eq!(defaults.store, StoreKind::Memory);
    assert_eq!(defaults.redis.url, "redis://127.0.0.1:6379");
    assert_eq!(defaults.redis.key_prefix, "gatekeeper:ratelimit:");
    assert_eq!(defaults.redis.timeout, Duration::from_millis(50));
    assert_eq!(defaults.redis.retry_interval, Duration::from_secs(1));
    assert_eq!(defaults.redis.on_error, OnStoreError::Local);

    let s = Settings::from_config(&config(&[
        ("store", json!("redis")),
        ("redis_url", json!("redis://10.0.0.5:6380/2")),
        ("key_prefix", json!("edge:")),
        ("redis_timeout", json!("20ms")),
        ("redis_retry_interval", json!("250ms")),
        ("on_store_error", json!("closed")),
    ]))
    .unwrap();
    assert_eq!(s.store, StoreKind::Redis);
    assert_eq!(s.redis.url, "redis://10.0.0.5:6380/2");
    assert_eq!(s.redis.key_prefix, "edge:");
    assert_eq!(s.redis.timeout, Duration::from_millis(20));
    assert_eq!(s.redis.retry_interval, Duration::from_millis(250));
    assert_eq!(s.redis.on_error, OnStoreError::Closed);

    for (value, policy) in [("open", OnStoreError::Open), ("local", OnStoreError::Local)] {
        let s = Settings::from_config(&config(&[("on_store_error", json!(value))])).unwrap();
        assert_eq!(s.redis.on_error, policy);
    }
    let unix = Settings::from_config(&config(&[("redis_url", json!("unix:///run/r.sock"))]));
    assert_eq!(unix.unwrap().redis.url, "unix:///run/r.sock");
}

#[test]
fn flag_spellings_with_dashes_are_accepted() {
    let s = Settings::from_config(&config(&[
        ("redis-url", json!("redis://127.0.0.1:7000")),
        ("on-store-error", json!("open")),
        ("max-keys", json!("5")),
    ]))
    .unwrap();
    assert_eq!(s.redis.url, "redis://127.0.0.1:7000");
    assert_eq!(s.redis.on_error, OnStoreError::Open);
    assert_eq!(s.max_keys, 5);
    let err = Settings::from_config(&config(&[("on-store-error", json!("x"))])).unwrap_err();
    assert!(err.message().contains("on_store_error"), "{err}");
}

#[test]
fn passwords_never_show() {
    let s = Settings::from_config(&config(&[(
        "redis_url",
        json!("redis://user:s3cret@10.0.0.5:6379/0"),
    )]))
    .unwrap();
    assert_eq!(s.redis.redacted_url(), "redis://***@10.0.0.5:6379/0");
    assert!(!format!("{s:?}").contains("s3cret"));
    let err = Settings::from_config(&config(&[(
        "redis_url",
        json!("http://user:s3cret@10.0.0.5:6379"),
    )]))
    .unwrap_err();
    assert!(!err.message().contains("s3cret"), "{err}");
    assert_eq!(redact_url("redis://host:1/0"), "redis://host:1/0");
    assert_eq!(redact_url("no scheme"), "no scheme");
}

#[test]
fn idle_buckets_expire_once_full_again() {
    let s = Settings {
        rate: 2.0,
        burst: 5.0,
        ..Settings::default()
    };
    // 2.5 s to refill, rounded up, plus a second.
    assert_eq!(s.idle_expiry(), Duration::from_secs(4));
    let slow = Settings {
        rate: 1e-12,
        ..Settings::default()
    };
    assert_eq!(slow.idle_expiry(), Duration::from_secs(365 * 24 * 3600 + 1));
}

#[test]
fn keys_are_the_client_ip_or_the_header() {
    let client = Settings::default();
    assert_eq!(client.key_of(&request("10.0.0.1:5555", &[])), "ip:10.0.0.1");
    assert_eq!(client.key_of(&request("[::1]:5555", &[])), "ip:::1");
    assert_eq!(client.key_of(&request("odd", &[])), "ip:odd");
    let by_header = Settings {
        key: KeySource::Header("x-api-key".into()),
        ..Settings::default()
    };
    assert_eq!(
        by_header.key_of(&request("10.0.0.1:1", &[("X-Api-Key", "k1")])),
        "header:k1"
    );
    assert_eq!(by_header.key_of(&request("10.0.0.1:1", &[])), "ip:10.0.0.1");
}
