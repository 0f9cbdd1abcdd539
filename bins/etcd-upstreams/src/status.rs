//! What the plugin reports to gatekeeper about its source: etcd unreachable (serving the last
//! known state), and the bad values it skips. Sent with `config_status` (the plugin's config
//! state: gatekeeper logs a change once, and shows it in `gatekeeper ctl plugins` and in
//! `/metrics` until cleared), only when the message changes.
//!
//! A bad state is sent again every few seconds while it lasts ([`Status::report`]'s `again`):
//! gatekeeper clears the state when it gets the answer to `start`, so a report made during
//! `start` (etcd unreachable, bad values in the initial load) would otherwise be lost.
//!
//! Not through `heartbeat`: a failed heartbeat counts as a missed one, and gatekeeper restarts a
//! plugin that misses several, which would make an etcd outage worse (a restarted process has
//! nothing to push until etcd answers again).

use std::time::SystemTime;

use gatekeeper_plugin_sdk::Manager;

/// How many bad keys a report names (the log has every one).
const NAMED: usize = 3;

/// The last report sent, and what the next one is built from.
#[derive(Debug, Default)]
pub struct Status {
    /// Since when etcd is unreachable, and the last error.
    unreachable: Option<(SystemTime, String)>,
    /// The bad values, `(key, reason)`.
    bad: Vec<(String, String)>,
    /// The message last sent (`None`: all is well, or nothing sent yet).
    sent: Option<Option<String>>,
}

impl Status {
    /// etcd could not be reached (the first error of an outage is kept).
    pub fn unreachable(&mut self, error: &str) {
        if self.unreachable.is_none() {
            self.unreachable = Some((SystemTime::now(), error.to_owned()));
        }
    }

    /// etcd answers again.
    pub fn reachable(&mut self) {
        self.unreachable = None;
    }

    /// The current bad values.
    pub fn bad_values(&mut self, bad: Vec<(String, String)>) {
        self.bad = bad;
    }

    /// The message for the current state, `None` when all is well.
    pub fn message(&self, endpoints: &str, upstreams: usize) -> Option<String> {
        let mut parts = Vec::new();
        if let Some((since, error)) = &self.unreachable {
            parts.push(format!(
                "etcd unreachable ({endpoints}) since {}: serving the last known state ({upstreams} upstreams): {error}",
                humantime::format_rfc3339_seconds(*since)
            ));
        }
        if !self.bad.is_empty() {
            let named: Vec<String> = self
                .bad
                .iter()
                .take(NAMED)
                .map(|(key, reason)| format!("{key}: {reason}"))
                .collect();
            let more = self.bad.len().saturating_sub(NAMED);
            let more = if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            };
            parts.push(format!(
                "{} bad value(s) skipped: {}{more}",
                self.bad.len(),
                named.join("; ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" | "))
    }

    /// Whether something is wrong (the report is not "all is well").
    pub fn is_bad(&self) -> bool {
        self.unreachable.is_some() || !self.bad.is_empty()
    }

    /// Sends the current state to gatekeeper if it changed since the last report, or with
    /// `again`, a bad state even if it did not (gatekeeper clears a plugin's state when the
    /// process's `start` is answered, and logs only changes, so sending it again is cheap).
    pub async fn report(
        &mut self,
        manager: &Manager,
        endpoints: &str,
        upstreams: usize,
        again: bool,
    ) {
        let message = self.message(endpoints, upstreams);
        let unchanged =
            self.sent.as_ref() == Some(&message) || (self.sent.is_none() && message.is_none());
        if unchanged && !(again && message.is_some()) {
            return;
        }
        let sent = match &message {
            Some(m) => manager.report_config_error(m.clone()).await,
            None => manager.report_config_ok().await,
        };
        match sent {
            Ok(()) => self.sent = Some(message),
            Err(e) => tracing::warn!("could not report the plugin's state to gatekeeper: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_is_wrong() {
        let mut status = Status::default();
        assert_eq!(status.message("http://e", 2), None);
        status.unreachable("connection refused");
        status.unreachable("a later error");
        let m = status.message("http://e", 2).unwrap();
        assert!(m.starts_with("etcd unreachable (http://e) since "), "{m}");
        assert!(m.ends_with("(2 upstreams): connection refused"), "{m}");
        status.reachable();
        let bad = (0..5).map(|i| (format!("/k/{i}"), "not JSON".to_owned()));
        status.bad_values(bad.collect());
        assert_eq!(
            status.message("http://e", 2).unwrap(),
            "5 bad value(s) skipped: /k/0: not JSON; /k/1: not JSON; /k/2: not JSON; and 2 more"
        );
    }
}
