//! The Redis store: token buckets in Redis hashes, taken from by a Lua script (`bucket.lua`) so
//! that every gatekeeper and every plugin instance sharing the Redis shares the limits, with
//! Redis's own clock. One multiplexed connection carries every call of the process: calls made
//! while others are in flight are written together and pipelined, without waiting for one
//! another. The script is sent by its SHA1 (`EVALSHA`) and loaded when Redis does not know it
//! (`NOSCRIPT`, e.g. after a restart), which `redis::Script` does.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};

use crate::limiter::Decision;
use crate::settings::Settings;
use crate::shared::{BucketStore, StoreError};

/// The bucket script.
const BUCKET_SCRIPT: &str = include_str!("bucket.lua");

/// Token buckets in Redis.
pub struct RedisStore {
    client: Client,
    script: Script,
    key_prefix: String,
    rate: f64,
    burst: f64,
    expiry_ms: u64,
    /// How long connecting may take (and the connection's own limit on one answer, which
    /// `redis_timeout` undercuts for requests).
    connect_timeout: Duration,
    /// The connection requests use; `None` before the first connection and after a failure.
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl RedisStore {
    /// A store for `settings` (not connected yet: see [`BucketStore::connect`]).
    pub fn new(settings: &Settings, connect_timeout: Duration) -> Result<Self, StoreError> {
        let client = Client::open(settings.redis.url.as_str()).map_err(|err| {
            StoreError::Unreachable(format!(
                "bad redis_url {}: {err}",
                settings.redis.redacted_url()
            ))
        })?;
        Ok(RedisStore {
            client,
            script: Script::new(BUCKET_SCRIPT),
            key_prefix: settings.redis.key_prefix.clone(),
            rate: settings.rate,
            burst: settings.burst,
            expiry_ms: u64::try_from(settings.idle_expiry().as_millis()).unwrap_or(u64::MAX),
            connect_timeout,
            connection: Mutex::new(None),
        })
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, connection: Option<MultiplexedConnection>) {
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = connection;
    }
}

/// Sorts a Redis error: the connection's failures make the store unreachable (skipped for a
/// while), anything else is an answer to this call only.
fn classify(err: RedisError) -> StoreError {
    if err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
    {
        StoreError::Unreachable(err.to_string())
    } else {
        StoreError::Answered(err.to_string())
    }
}

impl BucketStore for RedisStore {
    async fn take(&self, key: &str) -> Result<Decision, StoreError> {
        let Some(mut connection) = self.current() else {
            return Err(StoreError::Unreachable("not connected".to_owned()));
        };
        let answer: Result<(i64, i64), RedisError> = self
            .script
            .key(format!("{}{key}", self.key_prefix))
            .arg(self.rate)
            .arg(self.burst)
            .arg(self.expiry_ms)
            .invoke_async(&mut connection)
            .await;
        match answer {
            Ok((1, _)) => Ok(Decision::Allow),
            Ok((_, retry_after)) => Ok(Decision::Deny {
                retry_after_secs: u64::try_from(retry_after).unwrap_or(1).max(1),
            }),
            Err(err) => {
                let err = classify(err);
                if matches!(err, StoreError::Unreachable(_)) {
                    self.replace(None);
                }
                Err(err)
            }
        }
    }

    async fn connect(&self) -> Result<(), StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout));
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(classify)?;
        // Loading the script checks that Redis answers, and saves the first request the
        // NOSCRIPT round trip after a restart.
        self.script
            .prepare_invoke()
            .load_async(&mut connection)
            .await
            .map_err(classify)?;
        self.replace(Some(connection));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;

    use super::*;
    use crate::settings::RedisSettings;

    /// A redis-server on a free loopback port in a temp dir, killed on drop.
    struct TestRedis {
        port: u16,
        dir: PathBuf,
        child: Option<Child>,
    }

    impl TestRedis {
        /// Starts one, or prints why not and returns `None` when redis-server is missing.
        fn start() -> Option<TestRedis> {
            if Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_err()
            {
                eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
                return None;
            }
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let dir = std::env::temp_dir()
                .join(format!("rate-limit-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut redis = TestRedis {
                port,
                dir,
                child: None,
            };
            redis.spawn();
            Some(redis)
        }

        fn spawn(&mut self) {
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&self.dir)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            self.child = Some(child);
            // Ready once it answers PING (at most 5 s).
            for _ in 0..100 {
                let ping = Command::new("redis-cli")
                    .args(["-p", &self.port.to_string(), "ping"])
                    .output();
                if ping.is_ok_and(|out| out.stdout.starts_with(b"PONG")) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("redis-server did not answer on port {}", self.port);
        }

        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        fn cli(&self, args: &[&str]) -> String {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn settings(redis: &TestRedis, rate: f64, burst: f64) -> Settings {
        Settings {
            rate,
            burst,
            redis: RedisSettings {
                url: redis.url(),
                key_prefix: "test:".into(),
                ..RedisSettings::default()
            },
            ..Settings::default()
        }
    }

    async fn store(settings: &Settings) -> RedisStore {
        let store = RedisStore::new(settings, Duration::from_secs(2)).unwrap();
        store.connect().await.unwrap();
        store
    }

    fn deny(retry_after_secs: u64) -> Decision {
        Decision::Deny { retry_after_secs }
    }

    #[tokio::test]
    async fn buckets_in_redis_behave_like_the_memory_ones() {
        let Some(redis) = TestRedis::start() else {
            return;
        };
        let store = store(&settings(&redis, 0.001, 3.0)).await;
        for _ in 0..3 {
            assert_eq!(store.take("a").await, Ok(Decision::Allow));
        }
        assert_eq!(store.take("a").await, Ok(deny(1000)));
        assert_eq!(store.take("b").await, Ok(Decision::Allow));
        // The key carries the prefix, and expires once the bucket would be full again.
        assert_eq!(redis.cli(&["exists", "test:a"]), "1");
        let ttl: u64 = redis.cli(&["ttl", "test:a"]).parse().unwrap();
        assert!((2990..=3001).contains(&ttl), "ttl {ttl}");
    }

    #[tokio::test]
    async fn tokens_come_back_at_the_rate_by_redis_time() {
        let Some(redis) = TestRedis::start() else {
            return;
        };
        // 20 tokens a second: after 100 ms (or more) one is back.
        let store = store(&settings(&redis, 20.0, 1.0)).await;
        assert_eq!(store.take("a").await, Ok(Decision::Allow));
        // Less than 50 ms passed: no token yet, one second to wait at most.
        let second = store.take("a").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.take("a").await, Ok(Decision::Allow));
        assert!(
            second == Ok(deny(1)) || second == Ok(Decision::Allow),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn concurrent_takes_from_several_connections_never_exceed_the_burst() {
        let Some(redis) = TestRedis::start() else {
            return;
        };
        let settings = settings(&redis, 0.001, 10.0);
        let stores = [
            Arc::new(store(&settings).await),
            Arc::new(store(&settings).await),
        ];
        let mut tasks = Vec::new();
        for i in 0..60 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move { store.take("shared").await }));
        }
        let mut allowed = 0;
        for task in tasks {
            if task.await.unwrap() == Ok(Decision::Allow) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10);
    }

    #[tokio::test]
    async fn a_flushed_script_is_loaded_again() {
        let Some(redis) = TestRedis::start() else {
            return;
        };
        let store = store(&settings(&redis, 0.001, 2.0)).await;
        assert_eq!(store.take("a").await, Ok(Decision::Allow));
        assert_eq!(redis.cli(&["script", "flush"]), "OK");
        assert_eq!(store.take("a").await, Ok(Decision::Allow));
        assert_eq!(store.take("a").await, Ok(deny(1000)));
    }

    #[tokio::test]
    async fn a_stopped_redis_is_unreachable_and_a_restarted_one_is_used_again() {
        let Some(mut redis) = TestRedis::start() else {
            return;
        };
        let store = store(&settings(&redis, 0.001, 1.0)).await;
        assert_eq!(store.take("a").await, Ok(Decision::Allow));
        redis.stop();
        assert!(matches!(
            store.take("a").await,
            Err(StoreError::Unreachable(_))
        ));
        // The broken connection was dropped: no more tries on it.
        assert_eq!(
            store.take("a").await,
            Err(StoreError::Unreachable("not connected".into()))
        );
        assert!(matches!(
            store.connect().await,
            Err(StoreError::Unreachable(_))
        ));
        redis.spawn();
        store.connect().await.unwrap();
        // A fresh Redis (no persistence): a full bucket.
        assert_eq!(store.take("a").await, Ok(Decision::Allow));
        assert_eq!(store.take("a").await, Ok(deny(1000)));
    }

    #[tokio::test]
    async fn a_key_of_the_wrong_type_is_an_answered_error() {
        let Some(redis) = TestRedis::start() else {
            return;
        };
        let store = store(&settings(&redis, 1.0, 1.0)).await;
        assert_eq!(redis.cli(&["set", "test:a", "x"]), "OK");
        assert!(matches!(
            store.take("a").await,
            Err(StoreError::Answered(_))
        ));
        assert_eq!(store.take("b").await, Ok(Decision::Allow));
    }
}
