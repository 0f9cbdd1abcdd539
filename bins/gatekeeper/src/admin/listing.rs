//! Listing upstreams and backends a page at a time, for `/upstreams`, `/backends` and
//! `gatekeeper ctl upstreams|backends` at fleet size: filters (`upstream`, `prefix`), a page size
//! (`limit`, default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and a cursor (`after`) that says
//! where the previous page ended. The registry snapshot keeps upstreams in an ordered map (and
//! each upstream's backends ordered by id), so a page costs O(log n + page) whatever the size.
//!
//! Cursors: an upstream's id for upstreams; `UPSTREAM/BACKEND` for backends, with a `/` or `%`
//! inside either id written `%2F` / `%25`. A cursor needs no entry to still exist: the next page
//! starts after its place in the order.

use std::ops::Bound;
use std::sync::Arc;

use gatekeeper_proxy::registry::{BackendEntry, Snapshot, UpstreamEntry};

use super::http::percent_decode;

/// Items in a page when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 10_000;

/// What to list, from an admin request's query (`upstream`, `prefix`, `limit`, `after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only the upstream with this id (for backends: only its backends).
    pub upstream: Option<String>,
    /// Only upstreams routing this path prefix (one segment, as in an upstream's `prefixes`).
    pub prefix: Option<String>,
    /// Items in the page.
    pub limit: usize,
    /// Where the previous page ended (its `next`).
    pub after: Option<String>,
    /// Whether `limit` or `after` was given: the answer is then a page object with `next`.
    pub paged: bool,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            upstream: None,
            prefix: None,
            limit: DEFAULT_LIMIT,
            after: None,
            paged: false,
        }
    }
}

impl Query {
    /// Reads a query string (`limit=10&after=api`, values %-escaped); `allowed` names the
    /// parameters this path takes. The error says which parameter is wrong.
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Query, String> {
        let mut parsed = Query::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !allowed.contains(&key) {
                return Err(format!(
                    "unknown parameter `{key}` (this path takes: {})",
                    allowed.join(", ")
                ));
            }
            let value = percent_decode(value).ok_or_else(|| format!("{key}: invalid %-escape"))?;
            match key {
                "upstream" => parsed.upstream = Some(value),
                "prefix" => parsed.prefix = Some(value),
                "after" => {
                    parsed.after = Some(value);
                    parsed.paged = true;
                }
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            format!("limit: `{value}` must be a number from 1 to {MAX_LIMIT}")
                        })?;
                    parsed.paged = true;
                }
                _ => return Err(format!("unknown parameter `{key}`")),
            }
        }
        Ok(parsed)
    }
}

/// One page: the items, and the cursor of the next page when more follow.
#[derive(Debug)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// The `after` of the next page; `None` when this is the last.
    pub next: Option<String>,
}

/// Takes up to `limit` items from `items`; `next` is the cursor of the last one taken when
/// another follows.
fn paginate<T>(
    items: impl Iterator<Item = T>,
    limit: usize,
    cursor: impl Fn(&T) -> String,
) -> Page<T> {
    let mut items = items.peekable();
    let mut page = Vec::with_capacity(limit.min(MAX_LIMIT));
    while page.len() < limit {
        match items.next() {
            Some(item) => page.push(item),
            None => break,
        }
    }
    let next = match (items.peek(), page.last()) {
        (Some(_), Some(last)) => Some(cursor(last)),
        _ => None,
    };
    Page { items: page, next }
}

/// A page of upstreams, ordered by id.
pub fn upstreams<'a>(snapshot: &'a Snapshot, query: &Query) -> Page<&'a Arc<UpstreamEntry>> {
    let after = query.after.as_deref();
    let is_after = |id: &str| after.is_none_or(|after| id > after);
    let routes_prefix = |entry: &UpstreamEntry| {
        query
            .prefix
            .as_ref()
            .is_none_or(|prefix| entry.upstream.prefixes.contains(prefix))
    };
    let cursor = |entry: &&Arc<UpstreamEntry>| entry.upstream.id.clone();
    if let Some(id) = &query.upstream {
        let found = snapshot
            .upstream(id)
            .filter(|entry| is_after(&entry.upstream.id) && routes_prefix(entry));
        return paginate(found.into_iter(), query.limit, cursor);
    }
    if let Some(prefix) = &query.prefix {
        let having = snapshot.by_prefix.get(prefix).map(Vec::as_slice);
        let found = having
            .unwrap_or_default()
            .iter()
            .filter(|entry| is_after(&entry.upstream.id));
        return paginate(found, query.limit, cursor);
    }
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let found = snapshot
        .upstreams
        .range::<_, str>((start, Bound::Unbounded))
        .map(|(_, entry)| entry);
    paginate(found, query.limit, cursor)
}

/// A backend with the id of its upstream.
pub type Listed<'a> = (&'a str, &'a Arc<BackendEntry>);

/// A page of backends, ordered by upstream id, then backend id. A malformed cursor is an error.
pub fn backends<'a>(snapshot: &'a Snapshot, query: &Query) -> Result<Page<Listed<'a>>, String> {
    let after = query
        .after
        .as_deref()
        .map(parse_backend_cursor)
        .transpose()?;
    let cursor = |(upstream, backend): &Listed<'a>| backend_cursor(upstream, &backend.backend.id);
    // The upstreams to go through: the one asked for, or all from the cursor's on.
    let upstreams: Box<dyn Iterator<Item = &'a Arc<UpstreamEntry>> + 'a> = match &query.upstream {
        Some(id) => Box::new(snapshot.upstream(id).into_iter()),
        None => {
            let start = after.as_ref().map_or(Bound::Unbounded, |(upstream, _)| {
                Bound::Included(upstream.as_str())
            });
            Box::new(
                snapshot
                    .upstreams
                    .range::<_, str>((start, Bound::Unbounded))
                    .map(|(_, entry)| entry),
            )
        }
    };
    let found = upstreams.flat_map(move |entry| {
        let id = entry.upstream.id.as_str();
        let skip = match &after {
            Some((upstream, _)) if id < upstream.as_str() => entry.backends.len(),
            Some((upstream, backend)) if id == upstream => entry
                .backends
                .partition_point(|b| b.backend.id.as_str() <= backend.as_str()),
            _ => 0,
        };
        entry.backends[skip..].iter().map(move |b| (id, b))
    });
    Ok(paginate(found, query.limit, cursor))
}

/// `UPSTREAM/BACKEND`, with `%` and `/` in the ids escaped.
pub fn backend_cursor(upstream: &str, backend: &str) -> String {
    let escape = |id: &str| id.replace('%', "%25").replace('/', "%2F");
    format!("{}/{}", escape(upstream), escape(backend))
}

/// The upstream and backend ids of a [`backend_cursor`].
fn parse_backend_cursor(cursor: &str) -> Result<(String, String), String> {
    let malformed = || format!("after: `{cursor}` is not a backend cursor (UPSTREAM/BACKEND)");
    let (upstream, backend) = cursor.split_once('/').ok_or_else(malformed)?;
    if backend.contains('/') {
        return Err(malformed());
    }
    match (percent_decode(upstream), percent_decode(backend)) {
        (Some(upstream), Some(backend)) => Ok((upstream, backend)),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;

    use gatekeeper_proxy::Registry;
    use gatekeeper_rpc::types::{Backend, Upstream};

    use super::*;

    /// `upstreams` upstreams `svc0000`.. with `backends` backends `b0`.. each; `svc0000` and
    /// `svc0001` also route the prefix `shared` (each on its own listener).
    fn registry(upstreams: usize, backends: usize) -> Registry {
        let registry = Registry::new();
        for u in 0..upstreams {
            let id = format!("svc{u:04}");
            let mut upstream = serde_json::json!({ "id": id, "prefixes": [id] });
            if u < 2 {
                upstream["prefixes"] = serde_json::json!([id, "shared"]);
                upstream["protocols"] = serde_json::json!([format!("listener{u}")]);
            }
            let upstream: Upstream = serde_json::from_value(upstream).unwrap();
            registry.add_upstream(upstream).unwrap();
            for b in 0..backends {
                let backend: Backend = serde_json::from_value(serde_json::json!({
                    "id": format!("b{b}"), "address": format!("http://127.0.0.1:{}", 1000 + b),
                }))
                .unwrap();
                registry.add_backend(&id, backend).unwrap();
            }
        }
        registry
    }

    fn query(text: &str) -> Query {
        Query::parse(text, &["upstream", "prefix", "limit", "after"]).unwrap()
    }

    fn ids(page: &Page<&Arc<UpstreamEntry>>) -> Vec<String> {
        page.items.iter().map(|e| e.upstream.id.clone()).collect()
    }

    #[test]
    fn queries_are_read_and_bad_ones_name_their_parameter() {
        assert_eq!(query(""), Query::default());
        let q = query("limit=10&after=svc%2F1&upstream=a&prefix=api");
        assert_eq!(
            (q.limit, q.after.as_deref(), q.paged),
            (10, Some("svc/1"), true)
        );
        assert_eq!(
            (q.upstream.as_deref(), q.prefix.as_deref()),
            (Some("a"), Some("api"))
        );
        assert!(!query("upstream=a").paged);
        let allowed = ["upstream", "limit", "after"];
        for (bad, expected) in [
            ("limit=0", "limit: `0` must be a number from 1 to 10000"),
            (
                "limit=10001",
                "limit: `10001` must be a number from 1 to 10000",
            ),
            ("limit=x", "limit: `x` must be a number from 1 to 10000"),
            (
                "prefix=a",
                "unknown parameter `prefix` (this path takes: upstream, limit, after)",
            ),
            ("after=%zz", "after: invalid %-escape"),
        ] {
            assert_eq!(Query::parse(bad, &allowed).unwrap_err(), expected, "{bad}");
        }
    }

    #[test]
    fn following_cursors_lists_every_upstream_once() {
        let registry = registry(2500, 0);
        let snapshot = registry.snapshot();
        let mut seen = Vec::new();
        let mut after = String::new();
        let mut pages = 0;
        loop {
            let text = if after.is_empty() {
                "limit=1000".to_owned()
            } else {
                format!("limit=1000&after={after}")
            };
            let page = upstreams(&snapshot, &query(&text));
            seen.extend(ids(&page));
            pages += 1;
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen.len(), 2500);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 2500);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        // Without a limit: the default page, and the cursor of what follows.
        let page = upstreams(&snapshot, &Query::default());
        assert_eq!(page.items.len(), DEFAULT_LIMIT);
        assert_eq!(page.next.as_deref(), Some("svc0999"));
        // A page that ends exactly at the end has no next.
        let page = upstreams(&snapshot, &query("after=svc2489&limit=10"));
        assert_eq!(page.items.len(), 10);
        assert_eq!(page.next, None);
    }

    #[test]
    fn upstreams_are_filtered_by_id_and_prefix() {
        let registry = registry(50, 1);
        let snapshot = registry.snapshot();
        assert_eq!(
            ids(&upstreams(&snapshot, &query("upstream=svc0007"))),
            ["svc0007"]
        );
        assert!(upstreams(&snapshot, &query("upstream=nope"))
            .items
            .is_empty());
        assert_eq!(
            ids(&upstreams(&snapshot, &query("prefix=shared"))),
            ["svc0000", "svc0001"]
        );
        let first = upstreams(&snapshot, &query("prefix=shared&limit=1"));
        assert_eq!(
            (ids(&first), first.next.as_deref()),
            (vec!["svc0000".to_owned()], Some("svc0000"))
        );
        assert_eq!(
            ids(&upstreams(&snapshot, &query("prefix=shared&after=svc0000"))),
            ["svc0001"]
        );
        assert_eq!(
            ids(&upstreams(&snapshot, &query("prefix=svc0003"))),
            ["svc0003"]
        );
        assert!(upstreams(&snapshot, &query("prefix=none")).items.is_empty());
        assert!(
            upstreams(&snapshot, &query("upstream=svc0003&prefix=shared"))
                .items
                .is_empty()
        );
    }

    #[test]
    fn following_cursors_lists_every_backend_once() {
        let registry = registry(30, 7);
        let snapshot = registry.snapshot();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let text = match &after {
                Some(after) => format!("limit=4&after={after}"),
                None => "limit=4".to_owned(),
            };
            let page = backends(&snapshot, &query(&text)).unwrap();
            assert!(page.items.len() <= 4);
            seen.extend(
                page.items
                    .iter()
                    .map(|(u, b)| format!("{u}/{}", b.backend.id)),
            );
            match page.next {
                Some(next) => after = Some(next.replace('/', "%2F")),
                None => break,
            }
        }
        assert_eq!(seen.len(), 30 * 7);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 30 * 7);
        // One upstream's backends only, paged too.
        let page = backends(&snapshot, &query("upstream=svc0004&limit=5")).unwrap();
        assert!(page.items.iter().all(|(u, _)| *u == "svc0004"));
        assert_eq!(page.next.as_deref(), Some("svc0004/b4"));
        let rest = backends(&snapshot, &query("upstream=svc0004&after=svc0004%2Fb4")).unwrap();
        let rest: Vec<&str> = rest
            .items
            .iter()
            .map(|(_, b)| b.backend.id.as_str())
            .collect();
        assert_eq!(rest, ["b5", "b6"]);
        // A cursor whose backend is gone still says where to go on.
        let page = backends(&snapshot, &query("limit=1&after=svc0004%2Fb45")).unwrap();
        assert_eq!(page.items[0].1.backend.id, "b5");
        assert!(backends(&snapshot, &query("after=nocursor")).is_err());
    }

    #[test]
    fn backend_cursors_escape_slashes() {
        assert_eq!(backend_cursor("a/b", "c%d"), "a%2Fb/c%25d");
        assert_eq!(
            parse_backend_cursor("a%2Fb/c%25d").unwrap(),
            ("a/b".to_owned(), "c%d".to_owned())
        );
        assert!(parse_backend_cursor("a/b/c").is_err());
    }
}
