//! Test helpers: compact desired states.

use gatekeeper_plugin_sdk::desired::{DesiredState, DesiredUpstream};
use gatekeeper_plugin_sdk::{Backend, Upstream};

/// An upstream for [`state`]: `(upstream id, prefix, [(backend id, address)])`.
pub type Spec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A state from upstream specs.
pub fn state(specs: &[Spec<'_>]) -> DesiredState {
    specs
        .iter()
        .map(|(id, prefix, backends)| {
            let upstream = Upstream {
                id: (*id).into(),
                prefixes: vec![(*prefix).into()],
                ..Upstream::default()
            };
            let backends = backends.iter().map(|(b, address)| Backend {
                id: (*b).into(),
                address: (*address).into(),
                weight: None,
                extra: Default::default(),
            });
            DesiredUpstream::with_backends(upstream, backends)
        })
        .collect()
}
