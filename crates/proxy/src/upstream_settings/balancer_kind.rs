//! [`BalancerKind`]: the built-in balancer an upstream chooses with its `balancer` field. The
//! algorithms are in [`crate::balancer`] ([`BalancerKind::pick`]).

/// The built-in balancers, by the names of [`gatekeeper_rpc::types::BALANCERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalancerKind {
    /// `random`: at random, each backend with a probability proportional to its weight.
    #[default]
    Random,
    /// `round_robin`: each backend in turn (by id); with weights, smooth weighted round robin:
    /// over any `sum of weights` consecutive picks each backend is picked `weight` times, spread
    /// out (weights 3 and 1 give `a a b a`).
    RoundRobin,
    /// `least_outstanding`: the backend with the lowest `(in-flight requests + 1) / weight`;
    /// ties at random.
    LeastOutstanding,
}

impl BalancerKind {
    /// Every built-in balancer, in the order of [`gatekeeper_rpc::types::BALANCERS`].
    pub const ALL: [BalancerKind; 3] = [
        BalancerKind::Random,
        BalancerKind::RoundRobin,
        BalancerKind::LeastOutstanding,
    ];

    /// The name used in `Upstream.balancer`.
    pub fn as_str(self) -> &'static str {
        match self {
            BalancerKind::Random => "random",
            BalancerKind::RoundRobin => "round_robin",
            BalancerKind::LeastOutstanding => "least_outstanding",
        }
    }
}

impl std::str::FromStr for BalancerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BalancerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown balancer `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatekeeper_rpc::types::BALANCERS;

    #[test]
    fn names_match_the_protocol() {
        assert_eq!(BalancerKind::ALL.len(), BALANCERS.len());
        for (kind, name) in BalancerKind::ALL.into_iter().zip(BALANCERS) {
            assert_eq!(kind.as_str(), name);
            assert_eq!(name.parse::<BalancerKind>(), Ok(kind));
        }
        assert!("nope".parse::<BalancerKind>().is_err());
    }
}
