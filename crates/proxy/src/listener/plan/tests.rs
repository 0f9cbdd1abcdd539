//! Unit tests of the listener plan: no socket, no file.

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn wanted(name: &str, address: &str) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        addr: addr(address),
    }
}

fn present(name: &str, address: &str) -> Present {
    Present {
        name: name.into(),
        addr: addr(address),
        local: addr(address),
        tls: false,
        adopted: false,
    }
}

fn cert(listener: &str) -> TlsCertificate {
    TlsCertificate {
        listener: listener.into(),
        cert: "c.pem".into(),
        key: "k.pem".into(),
        ..TlsCertificate::default()
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

const BIND: Step = Step::Bind {
    tls: false,
    after_release: false,
};

#[test]
fn overlapping_addresses() {
    assert!(overlaps(addr("127.0.0.1:8080"), addr("127.0.0.1:8080")));
    assert!(overlaps(addr("0.0.0.0:8080"), addr("127.0.0.1:8080")));
    assert!(overlaps(addr("127.0.0.1:8080"), addr("[::]:8080")));
    assert!(!overlaps(addr("127.0.0.1:8080"), addr("127.0.0.2:8080")));
    assert!(!overlaps(addr("127.0.0.1:8080"), addr("127.0.0.1:8081")));
    assert!(!overlaps(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
}

#[test]
fn checks_like_bind() {
    let l = |name: &str| wanted(name, "127.0.0.1:0");
    assert!(matches!(check(&[], &[]), Err(ListenerError::NoListeners)));
    assert!(matches!(
        check(&[l("a"), l("a")], &[]),
        Err(ListenerError::DuplicateListener(name)) if name == "a"
    ));
    assert!(matches!(
        check(&[l("a")], &[cert("b")]),
        Err(ListenerError::Tls(TlsError::UnknownListener(name))) if name == "b"
    ));
    assert!(check(&[l("a"), l("b")], &[]).is_ok());
}

#[test]
fn startup_is_the_plan_for_an_empty_set() {
    let wanted = [
        wanted("web", "127.0.0.1:8080"),
        wanted("tls", "127.0.0.1:8443"),
    ];
    let plan = plan(&[], &wanted, &[cert("tls")]);
    assert_eq!(
        plan.steps,
        [
            BIND,
            Step::Bind {
                tls: true,
                after_release: false
            }
        ]
    );
    assert!(plan.release.is_empty());
    assert_eq!(plan.changes.added, names(&["web", "tls"]));
    assert!(plan.changes.removed.is_empty() && plan.changes.kept.is_empty());
}

#[test]
fn same_listeners_are_kept_and_tls_ones_recertified() {
    let mut tls = present("tls", "127.0.0.1:8443");
    tls.tls = true;
    let present = [present("web", "127.0.0.1:8080"), tls];
    let wanted = [
        wanted("web", "127.0.0.1:8080"),
        wanted("tls", "127.0.0.1:8443"),
    ];
    let plan = plan(&present, &wanted, &[cert("tls")]);
    assert_eq!(
        plan.steps,
        [
            Step::Keep(Certificates::Unchanged),
            Step::Keep(Certificates::Reload)
        ]
    );
    assert_eq!(plan.changes.kept, names(&["web", "tls"]));
    assert!(plan.changes.same_listeners());
    assert!(plan.changes.warnings.is_empty());
}

#[test]
fn added_removed_and_rebound() {
    let present = [
        present("keep", "127.0.0.1:1001"),
        present("gone", "127.0.0.1:1002"),
        present("moved", "127.0.0.1:1003"),
        present("secured", "127.0.0.1:1004"),
    ];
    let wanted = [
        wanted("keep", "127.0.0.1:1001"),
        wanted("moved", "127.0.0.1:2003"),
        wanted("secured", "127.0.0.1:1004"),
        wanted("new", "127.0.0.1:2005"),
    ];
    let plan = plan(&present, &wanted, &[cert("secured")]);
    assert_eq!(
        plan.steps,
        [
            Step::Keep(Certificates::Unchanged),
            BIND,
            // Same address, now TLS: rebound on the address its old socket holds.
            Step::Bind {
                tls: true,
                after_release: true
            },
            BIND,
        ]
    );
    assert_eq!(plan.release, names(&["secured"]));
    assert_eq!(plan.changes.added, names(&["new"]));
    assert_eq!(plan.changes.removed, names(&["gone"]));
    assert_eq!(plan.changes.rebound, names(&["moved", "secured"]));
    assert_eq!(plan.changes.kept, names(&["keep"]));
    assert!(!plan.changes.same_listeners());
}

#[test]
fn an_address_given_up_is_bound_after_its_holder_closes() {
    // `old` leaves 8080 to `new`; `other` takes a free port at once.
    let present = [
        present("old", "0.0.0.0:8080"),
        present("stay", "127.0.0.1:9000"),
    ];
    let wanted = [
        wanted("new", "127.0.0.1:8080"),
        wanted("stay", "127.0.0.1:9000"),
        wanted("other", "127.0.0.1:9001"),
    ];
    let plan = plan(&present, &wanted, &[]);
    assert_eq!(
        plan.steps,
        [
            Step::Bind {
                tls: false,
                after_release: true
            },
            Step::Keep(Certificates::Unchanged),
            BIND,
        ]
    );
    assert_eq!(plan.release, names(&["old"]));
    assert_eq!(plan.changes.removed, names(&["old"]));
}

#[test]
fn systemd_sockets_are_never_closed_or_rebound() {
    let adopted = |name: &str, address: &str, tls: bool| Present {
        tls,
        adopted: true,
        ..present(name, address)
    };
    let present = [
        adopted("moved", "127.0.0.1:1001", false),
        adopted("tls_off", "127.0.0.1:1002", true),
        adopted("tls_on", "127.0.0.1:1003", false),
        adopted("tls", "127.0.0.1:1004", true),
        adopted("unconfigured", "127.0.0.1:1005", false),
    ];
    let wanted = [
        wanted("moved", "127.0.0.1:2001"),
        wanted("tls_off", "127.0.0.1:1002"),
        wanted("tls_on", "127.0.0.1:1003"),
        wanted("tls", "127.0.0.1:1004"),
    ];
    let plan = plan(&present, &wanted, &[cert("tls_on"), cert("tls")]);
    assert_eq!(
        plan.steps,
        [
            Step::Keep(Certificates::Unchanged),
            Step::Keep(Certificates::Unchanged),
            Step::Keep(Certificates::CheckOnly),
            Step::Keep(Certificates::Reload),
        ]
    );
    assert!(plan.release.is_empty());
    assert!(plan.changes.removed.is_empty() && plan.changes.rebound.is_empty());
    assert_eq!(
        plan.changes.kept,
        names(&["moved", "tls_off", "tls_on", "tls"])
    );
    let warnings = plan.changes.warnings.join("\n");
    assert_eq!(plan.changes.warnings.len(), 4, "{warnings}");
    for expected in [
        "`moved` keeps the socket passed by systemd",
        "`tls_off` keeps serving TLS with its old certificates",
        "`tls_on` keeps serving plain HTTP",
        "`unconfigured` is no longer configured but keeps serving on 127.0.0.1:1005",
    ] {
        assert!(warnings.contains(expected), "{warnings}");
    }
}
