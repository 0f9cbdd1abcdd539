//! Reading every key under the prefix, in pages of `page_size` keys (one range request each,
//! every page after the first at the first one's revision, so the pages form one consistent
//! snapshot), so that a large prefix never makes one gRPC message larger than the client takes.

use std::time::Duration;

use etcd_client::{Client, GetOptions, KvClient, WatchClient};

use crate::settings::call;

/// The largest gRPC message the client accepts (a page of keys, a watch response).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What a read found.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Each key (lossy UTF-8) and its value, in key order.
    pub kvs: Vec<(String, Vec<u8>)>,
    /// The store's revision the snapshot is of.
    pub revision: i64,
}

/// The end of the range holding every key that starts with `prefix`: `prefix` with its last
/// byte that is not 0xff incremented, and what follows it dropped (`\0`, every key from
/// `prefix` on, when every byte is 0xff).
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A KV client that takes large pages.
pub fn kv_client(client: &Client) -> KvClient {
    client
        .kv_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// A watch client that takes large responses.
pub fn watch_client(client: &Client) -> WatchClient {
    client
        .watch_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// Reads every key starting with `prefix`, `page_size` keys per request, each request bounded
/// by `timeout`.
pub async fn read_prefix(
    client: &Client,
    prefix: &str,
    page_size: i64,
    timeout: Duration,
) -> Result<Snapshot, String> {
    let mut kv = kv_client(client);
    let end = range_end(prefix.as_bytes());
    let mut start = prefix.as_bytes().to_vec();
    let mut snapshot = Snapshot::default();
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(page_size);
        if snapshot.revision > 0 {
            options = options.with_revision(snapshot.revision);
        }
        let page = call(
            timeout,
            "reading the prefix",
            kv.get(start.clone(), Some(options)),
        )
        .await?;
        if snapshot.revision == 0 {
            snapshot.revision = page.header().map_or(0, |h| h.revision());
        }
        snapshot.kvs.extend(page.kvs().iter().map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().to_vec(),
            )
        }));
        match page.kvs().last() {
            Some(last) if page.more() => {
                // The next page starts right after the last key.
                start = last.key().to_vec();
                start.push(0);
            }
            _ => return Ok(snapshot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends() {
        assert_eq!(range_end(b"/gatekeeper/"), b"/gatekeeper0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"a\xfe"), b"a\xff");
        assert_eq!(range_end(b"\xff\xff"), b"\0");
        assert_eq!(range_end(b""), b"\0");
    }
}
