//! Decision caching for `modify_request`: a modifier's result may carry
//! `cache: {ttl_ms, key}` ([`CacheInstruction`]); the proxy then keeps the *decision*
//! ([`change::Decision`]) in the plugin's bounded [`DecisionCache`], keyed by the hook, the key
//! parts named and their values in the request the plugin saw, and replays it on requests whose
//! key values are equal, for `ttl_ms` (capped at [`MAX_CACHE_TTL`]), without calling the plugin.
//!
//! Bound: [`DEFAULT_DECISION_CACHE_ENTRIES`] entries per plugin, least recently used evicted
//! first (the `lru` crate). A part the request lacks (a header, the query, a context key) has the
//! value "absent". The owner of the cache (the binary, per plugin) clears it when the plugin is
//! restarted ([`DecisionCache::clear_on_new_epoch`], [`DecisionCache::clear`]); a reload with new
//! settings gets a new cache. Hits, misses and entries are counted ([`DecisionCacheStats`]).

pub(crate) mod change;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gatekeeper_rpc::methods::{CacheInstruction, CacheKeyPart};
use gatekeeper_rpc::types::HttpRequest;
use lru::LruCache;

use change::Decision;

/// The most entries a plugin's decision cache keeps (least recently used go first).
pub const DEFAULT_DECISION_CACHE_ENTRIES: usize = 10_000;

/// The longest a decision is reused, whatever `ttl_ms` says (one hour).
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// How many distinct keys (lists of parts) a plugin's cache looks requests up by; a plugin
/// naming more forgets the least recently named.
const MAX_KEY_SHAPES: usize = 8;

/// One entry's key: the hook, the parts named and their values ("absent": `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntryKey {
    hook: &'static str,
    parts: Arc<[CacheKeyPart]>,
    values: Vec<Option<String>>,
}

#[derive(Debug)]
struct Entry {
    decision: Decision,
    expires: Instant,
}

#[derive(Debug)]
struct Store {
    entries: LruCache<EntryKey, Entry>,
    /// The keys the plugin named, most recent first.
    shapes: Vec<(&'static str, Arc<[CacheKeyPart]>)>,
}

/// Counts of a plugin's decision cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionCacheStats {
    /// Requests answered from the cache (no plugin call).
    pub hits: u64,
    /// Requests that called the plugin because no cached decision applied (all of a plugin's
    /// calls while it never asks for caching).
    pub misses: u64,
    /// Decisions kept now (expired ones included until they are looked up or evicted).
    pub entries: u64,
}

/// A plugin's bounded cache of `modify_request` decisions (see the module docs).
#[derive(Debug)]
pub struct DecisionCache {
    store: Mutex<Store>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The epoch (the plugin's restart count) the entries belong to; read without the lock on
    /// every call, so a cache that need not be cleared is not locked.
    epoch: AtomicU64,
    /// Whether any decision was kept since the last clear: while not, a lookup is a miss
    /// without taking the lock (the common case: a plugin that never asks for caching).
    holds_decisions: AtomicBool,
}

impl Default for DecisionCache {
    fn default() -> Self {
        DecisionCache::new(DEFAULT_DECISION_CACHE_ENTRIES)
    }
}

/// The value of one key part in a request.
fn value_of(part: &CacheKeyPart, request: &HttpRequest) -> Option<String> {
    match part {
        CacheKeyPart::Method => Some(request.method.clone()),
        CacheKeyPart::Path => Some(request.path.clone()),
        CacheKeyPart::Query => request.query.clone(),
        CacheKeyPart::Host => Some(request.host.clone()),
        CacheKeyPart::Client => Some(
            request
                .remote_addr
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| request.remote_addr.clone()),
        ),
        CacheKeyPart::Header(name) => {
            let values: Vec<&str> = request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            // Joined with a byte no header value has, so that ["a,b"] and ["a", "b"] differ.
            (!values.is_empty()).then(|| values.join("\n"))
        }
        CacheKeyPart::Context(key) => request.context.get(key).map(ToString::to_string),
    }
}

fn key_of(hook: &'static str, parts: &Arc<[CacheKeyPart]>, request: &HttpRequest) -> EntryKey {
    EntryKey {
        hook,
        parts: parts.clone(),
        values: parts.iter().map(|p| value_of(p, request)).collect(),
    }
}

impl DecisionCache {
    /// A cache keeping at most `capacity` decisions (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        DecisionCache {
            store: Mutex::new(Store {
                entries: LruCache::new(capacity),
                shapes: Vec::new(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            holds_decisions: AtomicBool::new(false),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every decision (the plugin restarted); the counts stay.
    pub fn clear(&self) {
        let mut store = self.store();
        store.entries.clear();
        store.shapes.clear();
        self.holds_decisions.store(false, Ordering::Release);
    }

    /// Clears the cache when `epoch` (e.g. the plugin's restart count) differs from the one
    /// last given.
    pub fn clear_on_new_epoch(&self, epoch: u64) {
        if self.epoch.swap(epoch, Ordering::AcqRel) != epoch {
            self.clear();
        }
    }

    /// The counts now.
    pub fn stats(&self) -> DecisionCacheStats {
        DecisionCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.store().entries.len() as u64,
        }
    }

    /// The decision cached for `request` at `hook`, if one is valid now (counted as a hit or a
    /// miss).
    pub(crate) fn lookup(&self, hook: &'static str, request: &HttpRequest) -> Option<Decision> {
        self.lookup_at(hook, request, Instant::now())
    }

    fn lookup_at(
        &self,
        hook: &'static str,
        request: &HttpRequest,
        now: Instant,
    ) -> Option<Decision> {
        if !self.holds_decisions.load(Ordering::Acquire) {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut store = self.store();
        let Store { entries, shapes } = &mut *store;
        for (_, parts) in shapes.iter().filter(|(h, _)| *h == hook) {
            let key = key_of(hook, parts, request);
            let expired = match entries.get(&key) {
                Some(entry) if entry.expires > now => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Some(entry.decision.clone());
                }
                Some(_) => true,
                None => false,
            };
            if expired {
                entries.pop(&key);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Keeps `decision`, made for `request` (as the plugin saw it) at `hook`, as `instruction`
    /// says.
    pub(crate) fn insert(
        &self,
        hook: &'static str,
        request: &HttpRequest,
        instruction: &CacheInstruction,
        decision: Decision,
    ) {
        self.insert_at(hook, request, instruction, decision, Instant::now());
    }

    fn insert_at(
        &self,
        hook: &'static str,
        request: &HttpRequest,
        instruction: &CacheInstruction,
        decision: Decision,
        now: Instant,
    ) {
        let ttl = Duration::from_millis(instruction.ttl_ms).min(MAX_CACHE_TTL);
        if ttl.is_zero() {
            return;
        }
        let mut store = self.store();
        let position = store
            .shapes
            .iter()
            .position(|(h, parts)| *h == hook && **parts == *instruction.key);
        let parts = match position {
            Some(i) => {
                let shape = store.shapes.remove(i);
                let parts = shape.1.clone();
                store.shapes.insert(0, shape);
                parts
            }
            None => {
                let parts: Arc<[CacheKeyPart]> = instruction.key.clone().into();
                store.shapes.insert(0, (hook, parts.clone()));
                store.shapes.truncate(MAX_KEY_SHAPES);
                parts
            }
        };
        let key = key_of(hook, &parts, request);
        let expires = now + ttl;
        store.entries.put(key, Entry { decision, expires });
        self.holds_decisions.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use gatekeeper_rpc::types::HttpResponse;

    use super::*;

    const HOOK: &str = "modify_request";

    fn request(token: Option<&str>) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            remote_addr: "10.0.0.1:5000".into(),
            headers: token
                .map(|t| vec![("Authorization".to_owned(), t.to_owned())])
                .unwrap_or_default(),
            ..HttpRequest::default()
        }
    }

    fn by_token(ttl_ms: u64) -> CacheInstruction {
        CacheInstruction {
            ttl_ms,
            key: vec![CacheKeyPart::Header("authorization".into())],
        }
    }

    fn denied() -> Decision {
        Decision::Respond(HttpResponse::new(401, Vec::new()))
    }

    #[test]
    fn equal_key_values_hit_others_miss_and_absent_is_a_value() {
        let cache = DecisionCache::default();
        assert_eq!(cache.lookup(HOOK, &request(Some("a"))), None);
        assert_eq!(cache.stats().misses, 1);
        cache.insert(HOOK, &request(Some("a")), &by_token(60_000), denied());
        cache.insert(HOOK, &request(None), &by_token(60_000), Decision::Unchanged);

        let mut other_path = request(Some("a"));
        other_path.path = "/elsewhere".into();
        other_path.headers[0].0 = "authorization".into();
        assert_eq!(cache.lookup(HOOK, &other_path), Some(denied()));
        assert_eq!(
            cache.lookup(HOOK, &request(None)),
            Some(Decision::Unchanged)
        );
        assert_eq!(cache.lookup(HOOK, &request(Some("b"))), None);
        assert_eq!(cache.lookup("modify_response", &request(Some("a"))), None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (2, 3, 2));
    }

    #[test]
    fn entries_expire_after_their_ttl_and_the_ttl_is_capped() {
        let cache = DecisionCache::default();
        let start = Instant::now();
        cache.insert_at(HOOK, &request(Some("a")), &by_token(1000), denied(), start);
        let lookup = |after: Duration| cache.lookup_at(HOOK, &request(Some("a")), start + after);
        assert_eq!(lookup(Duration::from_millis(999)), Some(denied()));
        assert_eq!(lookup(Duration::from_millis(1000)), None);
        assert_eq!(cache.stats().entries, 0, "an expired entry is dropped");

        cache.insert_at(
            HOOK,
            &request(Some("a")),
            &by_token(u64::MAX),
            denied(),
            start,
        );
        assert_eq!(
            lookup(MAX_CACHE_TTL - Duration::from_millis(1)),
            Some(denied())
        );
        assert_eq!(lookup(MAX_CACHE_TTL), None);

        cache.insert_at(HOOK, &request(Some("a")), &by_token(0), denied(), start);
        assert_eq!(cache.stats().entries, 0, "ttl 0 caches nothing");
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let cache = DecisionCache::new(2);
        for token in ["a", "b"] {
            cache.insert(HOOK, &request(Some(token)), &by_token(60_000), denied());
        }
        assert!(cache.lookup(HOOK, &request(Some("a"))).is_some());
        cache.insert(HOOK, &request(Some("c")), &by_token(60_000), denied());
        assert_eq!(cache.stats().entries, 2);
        assert!(cache.lookup(HOOK, &request(Some("a"))).is_some());
        assert!(cache.lookup(HOOK, &request(Some("b"))).is_none());
        assert!(cache.lookup(HOOK, &request(Some("c"))).is_some());
    }

    #[test]
    fn a_restart_clears_the_cache() {
        let cache = DecisionCache::default();
        cache.clear_on_new_epoch(3);
        cache.insert(HOOK, &request(Some("a")), &by_token(60_000), denied());
        cache.clear_on_new_epoch(3);
        assert!(cache.lookup(HOOK, &request(Some("a"))).is_some());
        cache.clear_on_new_epoch(4);
        assert!(cache.lookup(HOOK, &request(Some("a"))).is_none());
        cache.insert(HOOK, &request(Some("a")), &by_token(60_000), denied());
        cache.clear();
        assert_eq!(cache.stats().entries, 0);
        assert!(cache.lookup(HOOK, &request(Some("a"))).is_none());
    }

    #[test]
    fn client_keys_by_ip_and_context_by_value() {
        let cache = DecisionCache::default();
        let instruction = CacheInstruction {
            ttl_ms: 60_000,
            key: vec![CacheKeyPart::Client, CacheKeyPart::Context("user".into())],
        };
        let mut first = request(None);
        first.context.insert("user".into(), "alice".into());
        cache.insert(HOOK, &first, &instruction, denied());
        let mut same_ip = first.clone();
        same_ip.remote_addr = "10.0.0.1:6000".into();
        assert!(cache.lookup(HOOK, &same_ip).is_some());
        let mut other_user = same_ip.clone();
        other_user.context.insert("user".into(), "bob".into());
        assert!(cache.lookup(HOOK, &other_user).is_none());
        let mut other_ip = first.clone();
        other_ip.remote_addr = "10.0.0.2:5000".into();
        assert!(cache.lookup(HOOK, &other_ip).is_none());
    }
}
