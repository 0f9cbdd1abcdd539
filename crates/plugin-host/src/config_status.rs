//! A plugin's config state as the plugin reports it with `config_status` after a change it made
//! on its own (a watched file it re-read): the rejection it reported last, with its time, or
//! none. Kept per plugin (every instance reports into the same cell); a change is logged once,
//! at warn when the config is rejected and at info when a rejection is cleared.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

/// The config a plugin rejected: its message and when it was reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRejection {
    /// What the plugin says is wrong (file, line and key where there are some).
    pub message: String,
    /// When the plugin reported it.
    pub at: SystemTime,
}

/// The last config state a plugin reported.
#[derive(Debug, Default)]
pub(crate) struct ConfigStatus {
    rejection: ArcSwapOption<ConfigRejection>,
}

impl ConfigStatus {
    /// Records a report from the plugin labelled `label`: `Some(message)` rejects, `None`
    /// clears. Logs only when the state changes (a report repeating the current one is silent).
    pub(crate) fn report(&self, label: &str, error: Option<String>) {
        match error {
            Some(message) => {
                let unchanged = self
                    .rejection
                    .load()
                    .as_ref()
                    .is_some_and(|current| current.message == message);
                if unchanged {
                    return;
                }
                tracing::warn!(plugin = %label, error = %message, "the plugin rejected its new config and keeps its last good one");
                self.rejection.store(Some(Arc::new(ConfigRejection {
                    message,
                    at: SystemTime::now(),
                })));
            }
            None => {
                if self.rejection.swap(None).is_some() {
                    tracing::info!(plugin = %label, "the plugin's config is accepted again");
                }
            }
        }
    }

    /// Clears the rejection silently (a new process of the plugin read its config and started).
    pub(crate) fn clear(&self) {
        self.rejection.store(None);
    }

    /// The current rejection, if any.
    pub(crate) fn rejection(&self) -> Option<ConfigRejection> {
        self.rejection.load().as_deref().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_rejection_until_cleared() {
        let status = ConfigStatus::default();
        assert_eq!(status.rejection(), None);
        status.report("p", Some("a.yml:1: x: bad".to_owned()));
        let first = status.rejection().map(|r| r.message);
        assert_eq!(first.as_deref(), Some("a.yml:1: x: bad"));
        status.report("p", Some("a.yml:2: y: bad".to_owned()));
        let second = status.rejection().map(|r| r.message);
        assert_eq!(second.as_deref(), Some("a.yml:2: y: bad"));
        status.report("p", None);
        assert_eq!(status.rejection(), None);
        status.report("p", Some("z".to_owned()));
        status.clear();
        assert_eq!(status.rejection(), None);
    }
}
