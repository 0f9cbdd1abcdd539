//! Unit tests of batches and of the incremental snapshot maps: a batch is applied whole or not
//! at all, readers never see half of one, and the maps kept up to date change by change equal
//! the maps built from scratch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use super::tests::{backend, upstream};
use super::*;

fn add_upstream(id: &str, prefix: &str) -> RegistryOp {
    RegistryOp::AddUpstream(upstream(id, &[prefix], &[]))
}

fn add_backend(upstream_id: &str, id: &str, port: u16) -> RegistryOp {
    RegistryOp::AddBackend {
        upstream_id: upstream_id.into(),
        backend: backend(id, &format!("http://127.0.0.1:{port}")),
    }
}

#[test]
fn a_batch_with_a_bad_item_changes_nothing_and_names_every_bad_item() {
    let r = Registry::new();
    r.add_upstream(upstream("kept", &["kept"], &[])).unwrap();
    let mut feed = r.subscribe();
    let before = r.snapshot().version;
    let err = r
        .apply_batch(vec![
            add_upstream("a", "a"),
            add_backend("a", "b1", 1),
            add_backend("a", "bad", 0).clone_with_address("not a uri"),
            add_upstream("b", "kept"),
            RegistryOp::RemoveUpstream { id: "kept".into() },
            add_backend("missing", "b1", 1),
        ])
        .unwrap_err();
    assert_eq!(err.total, 6);
    let indexes: Vec<usize> = err.refused.iter().map(|r| r.index).collect();
    assert_eq!(indexes, [2, 3, 5]);
    assert!(matches!(
        err.refused[0].error,
        RegistryError::InvalidAddress { .. }
    ));
    assert_eq!(err.refused[1].error.code(), codes::CONFLICT);
    assert_eq!(
        err.refused[2].error,
        RegistryError::UnknownUpstream("missing".into())
    );
    assert!(
        err.to_string().starts_with("3 of 6 changes refused"),
        "{err}"
    );
    let snap = r.snapshot();
    assert_eq!(snap.version, before, "nothing published");
    let ids: Vec<&String> = snap.upstreams.keys().collect();
    assert_eq!(ids, ["kept"]);
    assert!(feed.try_recv().is_err(), "nothing sent to subscribers");
    // The registry still works, and the refused batch left no trace (`a` can be added).
    r.apply_batch(vec![add_upstream("a", "a"), add_backend("a", "b1", 1)])
        .unwrap();
    assert_eq!(r.snapshot().upstream("a").unwrap().backends.len(), 1);
}

impl RegistryOp {
    fn clone_with_address(mut self, address: &str) -> Self {
        if let RegistryOp::AddBackend { backend, .. } = &mut self {
            backend.address = address.into();
        }
        self
    }
}

#[test]
fn a_batch_is_one_snapshot_and_its_changes_arrive_in_order() {
    let r = Registry::new();
    let mut feed = r.subscribe();
    let summary = r
        .apply_batch(vec![
            add_upstream("a", "a"),
            add_backend("a", "b1", 1),
            add_backend("a", "b2", 2),
            add_backend("a", "b2", 2),
            add_upstream("gone", "gone"),
            RegistryOp::RemoveUpstream { id: "gone".into() },
            RegistryOp::RemoveBackend {
                upstream_id: "a".into(),
                backend_id: "b1".into(),
            },
        ])
        .unwrap();
    assert_eq!(
        summary,
        BatchSummary {
            upstreams_added: 2,
            upstreams_removed: 1,
            backends_added: 2,
            backends_removed: 1,
            unchanged: 1,
        }
    );
    let snap = r.snapshot();
    assert_eq!(snap.version, 1);
    assert_eq!(snap.len(), 1);
    let backends: Vec<&str> = snap
        .upstream("a")
        .unwrap()
        .backends
        .iter()
        .map(|b| b.backend.id.as_str())
        .collect();
    assert_eq!(backends, ["b2"]);
    assert!(!snap.by_prefix.contains_key("gone"));
    let mut kinds = Vec::new();
    while let Ok(change) = feed.try_recv() {
        kinds.push(match change {
            RegistryChange::UpstreamAdded(u) => format!("+{}", u.id),
            RegistryChange::UpstreamRemoved { id } => format!("-{id}"),
            RegistryChange::BackendAdded { backend, .. } => format!("+{}", backend.id),
            RegistryChange::BackendRemoved { backend_id, .. } => format!("-{backend_id}"),
        });
    }
    assert_eq!(kinds, ["+a", "+b1", "+b2", "+gone", "-gone", "-b1"]);
    // An empty batch, or one of no-ops, publishes nothing.
    assert_eq!(r.apply_batch(vec![]).unwrap(), BatchSummary::default());
    assert_eq!(
        r.apply_batch(vec![add_upstream("a", "a")])
            .unwrap()
            .unchanged,
        1
    );
    assert_eq!(r.snapshot().version, 1);
}

#[test]
fn a_reader_never_sees_half_a_batch() {
    const UPSTREAMS: usize = 50;
    let r = Arc::new(Registry::new());
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (r, done) = (r.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = 0usize;
            while !done.load(Ordering::Relaxed) {
                let snap = r.snapshot();
                let n = snap.len();
                assert!(n == 0 || n == UPSTREAMS, "half a batch: {n} upstreams");
                for entry in snap.iter() {
                    assert_eq!(
                        entry.backends.len(),
                        2,
                        "half a batch: {}",
                        entry.upstream.id
                    );
                }
                seen += 1;
            }
            seen
        })
    };
    for _round in 0..200 {
        let mut ops = Vec::new();
        for i in 0..UPSTREAMS {
            let id = format!("u{i}");
            ops.push(add_upstream(&id, &id));
            ops.push(add_backend(&id, "b1", 1));
            ops.push(add_backend(&id, "b2", 2));
        }
        r.apply_batch(ops).unwrap();
        let removes = (0..UPSTREAMS)
            .map(|i| RegistryOp::RemoveUpstream {
                id: format!("u{i}"),
            })
            .collect();
        r.apply_batch(removes).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

/// The routing maps as a from-scratch build would make them: (key, ids in order).
fn rebuilt(snap: &Snapshot) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) {
    let (mut prefixes, mut hosts) = (BTreeMap::new(), BTreeMap::new());
    for entry in snap.iter() {
        for p in &entry.upstream.prefixes {
            prefixes
                .entry(p.clone())
                .or_insert_with(Vec::new)
                .push(entry.upstream.id.clone());
        }
        for h in &entry.upstream.hostnames {
            hosts
                .entry(h.clone())
                .or_insert_with(Vec::new)
                .push(entry.upstream.id.clone());
        }
    }
    (prefixes, hosts)
}

fn published(
    map: &imbl::HashMap<String, Vec<Arc<UpstreamEntry>>>,
    snap: &Snapshot,
) -> BTreeMap<String, Vec<String>> {
    map.iter()
        .map(|(k, entries)| {
            for e in entries {
                // The routing maps hold the same entries as the id map.
                assert!(Arc::ptr_eq(e, snap.upstream(&e.upstream.id).unwrap()));
            }
            (
                k.clone(),
                entries.iter().map(|e| e.upstream.id.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn incremental_maps_equal_a_rebuild_after_many_random_changes() {
    // A small deterministic generator (no dependency): xorshift.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let r = Registry::new();
    for _ in 0..3000 {
        let u = format!("u{}", next(40));
        // Upstreams on disjoint listeners may share a prefix; hostnames overlap too.
        let listener = format!("l{}", next(3));
        let op = match next(5) {
            0 | 1 => {
                let mut up = upstream(
                    &u,
                    &[&format!("p{}", next(30))],
                    &[&format!("h{}.test", next(20))],
                );
                up.protocols = vec![listener];
                RegistryOp::AddUpstream(up)
            }
            2 => RegistryOp::RemoveUpstream { id: u },
            3 => add_backend(&u, &format!("b{}", next(5)), 1),
            _ => RegistryOp::RemoveBackend {
                upstream_id: u,
                backend_id: format!("b{}", next(5)),
            },
        };
        let _ = if next(4) == 0 {
            r.apply_batch(vec![op]).map(|_| ()).map_err(|_| ())
        } else {
            apply_one(&r, op).map_err(|_| ())
        };
        let snap = r.snapshot();
        let (prefixes, hosts) = rebuilt(&snap);
        assert_eq!(published(&snap.by_prefix, &snap), prefixes);
        assert_eq!(published(&snap.by_hostname, &snap), hosts);
        for entry in snap.iter() {
            let ids: Vec<&str> = entry
                .backends
                .iter()
                .map(|b| b.backend.id.as_str())
                .collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            assert_eq!(ids, sorted);
        }
    }
    assert!(!r.snapshot().is_empty());
}

fn apply_one(r: &Registry, op: RegistryOp) -> Result<(), RegistryError> {
    match op {
        RegistryOp::AddUpstream(u) => r.add_upstream(u),
        RegistryOp::RemoveUpstream { id } => r.remove_upstream(&id),
        RegistryOp::AddBackend {
            upstream_id,
            backend,
        } => r.add_backend(&upstream_id, backend),
        RegistryOp::RemoveBackend {
            upstream_id,
            backend_id,
        } => r.remove_backend(&upstream_id, &backend_id),
    }
}
