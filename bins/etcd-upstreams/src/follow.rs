//! Following etcd: one range read of the prefix and a whole push, then a watch from the next
//! revision, pushing the difference after each watch response.
//!
//! On a lost connection (any etcd error, a closed or canceled watch), the plugin reconnects with
//! a backoff (100 ms, doubling, at most `reconnect_max`) to any endpoint and resumes the watch
//! from the last revision seen, so no change is missed. When that revision has been compacted
//! away, it reads the whole prefix again and pushes it whole (`replace: true`: the proxy applies
//! only the difference). Meanwhile the proxy keeps the last state pushed, which keeps serving.
//! The outage is logged when it starts, then once per `warn_interval` (with the attempts made),
//! and when it ends; it is reported to gatekeeper meanwhile ([`crate::status`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchResponse};

use crate::cache;
use crate::mirror::Mirror;
use crate::push::{PushError, Pusher};
use crate::read;
use crate::settings::{call, Settings};
use crate::status::Status;

/// The first wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// How long each page of the read of the prefix may take (reaching etcd is bounded by
/// `dial_timeout`).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How soon a push the proxy did not answer is tried again.
const PUSH_RETRY: Duration = Duration::from_secs(1);
/// How often a bad state is reported again while it lasts (see [`crate::status`]).
const STATUS_REFRESH: Duration = Duration::from_secs(2);

/// An outage in progress.
#[derive(Debug)]
struct Outage {
    since: Instant,
    attempts: u32,
    warned_at: Instant,
}

/// Follows the prefix and keeps the proxy's upstreams in step with it.
#[derive(Debug)]
pub struct Follower {
    settings: Settings,
    mirror: Mirror,
    pusher: Pusher,
    status: Status,
    /// The revision of the last read or event seen (0: nothing read yet).
    revision: i64,
    /// Whether the prefix must be read whole again (the watch's revision was compacted).
    resync: bool,
    /// Whether a push the proxy did not answer must be tried again.
    push_pending: bool,
    outage: Option<Outage>,
    backoff: Duration,
    /// The waiting backend keys already logged (each is logged once while it waits).
    waiting: BTreeSet<(String, String)>,
    /// When the state was last reported.
    reported_at: Instant,
    /// Whether the last write of the cache file failed.
    cache_failed: bool,
}

impl Follower {
    /// A follower that has read nothing yet.
    pub fn new(settings: Settings, pusher: Pusher) -> Self {
        Follower {
            mirror: Mirror::new(&settings.prefix),
            settings,
            pusher,
            status: Status::default(),
            revision: 0,
            resync: false,
            push_pending: false,
            outage: None,
            backoff: BACKOFF_MIN,
            waiting: BTreeSet::new(),
            reported_at: Instant::now(),
            cache_failed: false,
        }
    }

    /// The initial load, in `start`: connects, reads the prefix and pushes it whole. Returns the
    /// client to watch with, or why etcd could not be read (then nothing was pushed).
    pub async fn first_load(&mut self) -> Result<Client, String> {
        let mut client = self.settings.connect().await.map_err(|e| e.to_string())?;
        self.reload(&mut client).await?;
        Ok(client)
    }

    /// Records that etcd could not be reached at start (logged by the caller), and pushes the
    /// cache file's state if there is one.
    pub async fn unreachable_at_start(&mut self, error: &str) {
        self.begin_outage(error, false);
        if let Some(path) = self.settings.cache_file.clone() {
            match cache::load(&path) {
                Ok((state, revision)) => {
                    let upstreams = state.len();
                    match self.pusher.push_saved(state).await {
                        Ok(()) => tracing::warn!(
                            file = %path.display(),
                            upstreams,
                            revision,
                            "serving the last known state from the cache file until etcd answers"
                        ),
                        Err(e) => {
                            tracing::error!(file = %path.display(), "cannot push the cache file's state: {e}")
                        }
                    }
                }
                Err(e) => tracing::warn!("{e}; starting with no upstreams from etcd"),
            }
        } else {
            tracing::info!("starting with no upstreams from etcd (a `cache_file` would serve the last known state here)");
        }
        self.report().await;
    }

    /// Writes what the proxy has to the cache file, if there is one (a failure is logged once
    /// until a write succeeds again).
    fn save_cache(&mut self) {
        let Some(path) = &self.settings.cache_file else {
            return;
        };
        match cache::save(path, self.pusher.applied(), self.revision) {
            Ok(()) => self.cache_failed = false,
            Err(e) if !self.cache_failed => {
                tracing::warn!("{e}");
                self.cache_failed = true;
            }
            Err(_) => {}
        }
    }

    /// Follows etcd for the life of the process, starting with `client` if the initial load
    /// succeeded with it.
    pub async fn run(mut self, mut client: Option<Client>) {
        loop {
            let error = self.session(client.take()).await;
            if self.outage.is_none() {
                self.begin_outage(&error, true);
                self.report().await;
            } else {
                self.still_down(&error);
                self.refresh_report().await;
            }
            tokio::time::sleep(self.backoff).await;
            self.backoff = (self.backoff * 2).min(self.settings.reconnect_max);
        }
    }

    fn begin_outage(&mut self, error: &str, lost: bool) {
        let now = Instant::now();
        self.outage = Some(Outage {
            since: now,
            attempts: 1,
            warned_at: now,
        });
        self.status.unreachable(error);
        if lost {
            tracing::warn!(
                endpoints = %self.settings.endpoints_shown(),
                upstreams = self.pusher.upstreams(),
                "lost etcd ({error}): serving the last known state; reconnecting (every {} at most, resuming from revision {})",
                humantime::format_duration(self.settings.reconnect_max),
                self.revision
            );
        }
    }

    fn still_down(&mut self, error: &str) {
        let Some(outage) = &mut self.outage else {
            return;
        };
        outage.attempts += 1;
        if outage.warned_at.elapsed() >= self.settings.warn_interval {
            outage.warned_at = Instant::now();
            tracing::warn!(
                endpoints = %self.settings.endpoints_shown(),
                attempts = outage.attempts,
                upstreams = self.pusher.upstreams(),
                "etcd still unreachable after {}: serving the last known state; last error: {error}",
                humantime::format_duration(Duration::from_secs(outage.since.elapsed().as_secs()))
            );
        } else {
            tracing::debug!(
                attempts = outage.attempts,
                "etcd still unreachable: {error}"
            );
        }
    }

    /// The watch is set up: ends an outage.
    async fn connected(&mut self) {
        self.backoff = BACKOFF_MIN;
        if let Some(outage) = self.outage.take() {
            tracing::info!(
                endpoints = %self.settings.endpoints_shown(),
                attempts = outage.attempts,
                revision = self.revision,
                "etcd reachable again after {}; following it",
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(outage.since.elapsed().as_millis()).unwrap_or(u64::MAX)
                ))
            );
            self.status.reachable();
            self.report().await;
        }
    }

    /// Reports the state if it changed.
    async fn report(&mut self) {
        self.send_report(false).await;
    }

    /// Reports a bad state again if it was last reported [`STATUS_REFRESH`] ago.
    async fn refresh_report(&mut self) {
        if self.status.is_bad() && self.reported_at.elapsed() >= STATUS_REFRESH {
            self.send_report(true).await;
        }
    }

    async fn send_report(&mut self, again: bool) {
        let endpoints = self.settings.endpoints_shown();
        let upstreams = self.pusher.upstreams();
        self.status
            .report(self.pusher.manager(), &endpoints, upstreams, again)
            .await;
        self.reported_at = Instant::now();
    }

    /// The range the plugin reads: every key under `PREFIX/`.
    fn range(&self) -> String {
        format!("{}/", self.settings.prefix)
    }

    /// Reads the whole prefix into a fresh mirror and pushes it whole.
    async fn reload(&mut self, client: &mut Client) -> Result<(), String> {
        let range = self.range();
        // Reaching etcd is bounded by `dial_timeout`; reading everything may take longer.
        let count_only = GetOptions::new().with_prefix().with_count_only();
        call(
            self.settings.dial_timeout,
            "reaching etcd",
            client.get(range.clone(), Some(count_only)),
        )
        .await?;
        let snapshot =
            read::read_prefix(client, &range, self.settings.page_size, READ_TIMEOUT).await?;
        let mut mirror = Mirror::new(&self.settings.prefix);
        for (key, value) in &snapshot.kvs {
            mirror.put(key, value);
        }
        self.mirror = mirror;
        self.revision = snapshot.revision;
        tracing::info!(
            keys = snapshot.kvs.len(),
            revision = self.revision,
            prefix = %self.settings.prefix,
            "read every key under the prefix"
        );
        self.pusher.push_whole_next();
        self.push().await;
        Ok(())
    }

    async fn push(&mut self) {
        match self.pusher.push(&mut self.mirror).await {
            Ok(applied) => {
                self.push_pending = false;
                if applied {
                    self.save_cache();
                }
            }
            Err(PushError::NotAnswered(e)) => {
                tracing::error!(
                    "could not push the upstreams ({e}); trying again in {}",
                    humantime::format_duration(PUSH_RETRY)
                );
                self.push_pending = true;
            }
            Err(e) => {
                tracing::error!("{e}");
                self.push_pending = false;
            }
        }
        let waiting = self.mirror.waiting_keys();
        for (key, upstream) in waiting.difference(&self.waiting) {
            tracing::info!(key, upstream, "backend waits for its upstream's key");
        }
        self.waiting = waiting;
        self.status.bad_values(self.mirror.bad_values());
        self.report().await;
    }

    /// Connects (unless given a client), reads the prefix if needed, and watches until something
    /// fails; returns what failed.
    async fn session(&mut self, client: Option<Client>) -> String {
        let mut client = match client {
            Some(client) => client,
            None => match self.settings.connect().await {
                Ok(client) => client,
                Err(e) => return e.to_string(),
            },
        };
        loop {
            if self.revision == 0 || self.resync {
                if let Err(e) = self.reload(&mut client).await {
                    return e;
                }
                self.resync = false;
            }
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(self.revision + 1);
            let mut watcher = read::watch_client(&client);
            let watching = call(
                self.settings.dial_timeout,
                "watching the prefix",
                watcher.watch(self.range(), Some(options)),
            )
            .await;
            let mut stream = match watching {
                Ok(stream) => stream,
                Err(e) => return e,
            };
            loop {
                let chores = self.push_pending || self.status.is_bad();
                let message = tokio::select! {
                    message = stream.message() => message,
                    () = tokio::time::sleep(PUSH_RETRY), if chores => {
                        if self.push_pending {
                            self.push().await;
                        }
                        self.refresh_report().await;
                        continue;
                    }
                };
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return "etcd closed the watch".into(),
                    Err(e) => return format!("watching the prefix: {e}"),
                };
                if response.created() {
                    self.connected().await;
                }
                if response.compact_revision() > 0 {
                    tracing::warn!(
                        revision = self.revision + 1,
                        compacted_to = response.compact_revision(),
                        "etcd compacted the revisions this plugin had not seen: reading the whole prefix again"
                    );
                    self.resync = true;
                    break;
                }
                if response.canceled() {
                    return format!("etcd canceled the watch: {}", response.cancel_reason());
                }
                if self.apply(&response) {
                    self.push().await;
                }
            }
        }
    }

    /// Records a watch response's events; returns whether there were any.
    fn apply(&mut self, response: &WatchResponse) -> bool {
        let mut any = false;
        for event in response.events() {
            let Some(kv) = event.kv() else {
                continue;
            };
            let key = String::from_utf8_lossy(kv.key());
            match event.event_type() {
                EventType::Put => self.mirror.put(&key, kv.value()),
                EventType::Delete => self.mirror.delete(&key),
            };
            tracing::debug!(%key, revision = kv.mod_revision(), kind = ?event.event_type(), "etcd event");
            self.revision = self.revision.max(kv.mod_revision());
            any = true;
        }
        any
    }
}
