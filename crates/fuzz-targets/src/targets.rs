//! The target bodies: each takes any bytes and must return without panicking.

use bytes::BytesMut;
use gatekeeper_rpc::framing;
use gatekeeper_rpc::message::Message;
use gatekeeper_rpc::methods::{is_manager_method, method_info, METHODS};
use http::{HeaderName, HeaderValue, Request, Uri, Version};
use tokio_util::codec::Decoder;

/// The line limit of the framing target: small, so that the too-long path is reached too.
const FUZZ_MAX_LINE_BYTES: usize = 512;

/// NDJSON framing and JSON-RPC decoding: the bytes as they arrive on a plugin connection, cut
/// into lines by the codec the peers use (the connection ends at a line over the limit), each
/// non-blank line parsed as a message, and a request's params read by its method's type.
pub fn rpc_framing(data: &[u8]) {
    let mut codec = framing::codec(FUZZ_MAX_LINE_BYTES);
    let mut buffer = BytesMut::from(data);
    loop {
        match codec.decode(&mut buffer) {
            Ok(Some(line)) => read_message(&line),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    if let Ok(Some(line)) = codec.decode_eof(&mut buffer) {
        read_message(&line);
    }
}

fn read_message(line: &str) {
    assert!(line.len() <= FUZZ_MAX_LINE_BYTES, "a line over the limit");
    if line.trim().is_empty() {
        return;
    }
    match Message::parse(line) {
        Ok(Message::Request(request)) => {
            if let (Some(method), Some(params)) = (method_info(&request.method), &request.params) {
                let _ = (method.check_params)(params.get());
            }
        }
        Ok(Message::Notification(_)) | Ok(Message::Response(_)) | Err(_) => {}
    }
}

/// What a plugin sends for one method of the protocol table: the first byte picks the method
/// (and, for a method both sides call, whether the rest is its params or its result); the rest
/// is parsed as the params the plugin calls it with, or the result it answers with. Manager
/// params that parse are applied to a registry by gatekeeper's registry manager.
pub fn rpc_method(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let method = &METHODS[usize::from(selector & 0x7f) % METHODS.len()];
    let plugin_calls_it = !method.called_by.is_empty();
    let plugin_answers_it = !method.received_by().is_empty();
    let result = plugin_answers_it && (!plugin_calls_it || selector & 0x80 != 0);
    if result {
        let _ = (method.check_result)(text);
        return;
    }
    if (method.check_params)(text).is_ok() {
        let _ = (method.normalize_params)(text);
        if is_manager_method(method.name) {
            let _ = gatekeeper::fuzzing::manager_call(method.name, text);
        }
    }
}

/// The proxy's request checks on a request head: the first byte picks the HTTP version, then
/// the first line is the request target and each further line a `name:value` header. A head
/// that passes has no dot segment left in its path. The request target, when it is a path, also
/// goes through the dot-segment removal on its own.
pub fn request_checks(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let version = match selector % 3 {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => Version::HTTP_2,
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    if let Some(path) = std::str::from_utf8(target)
        .ok()
        .filter(|p| p.starts_with('/'))
    {
        check_dot_segment_removal(path);
    }
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let mut request = Request::new(());
    *request.version_mut() = version;
    *request.uri_mut() = uri;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        request.headers_mut().append(name, value);
    }
    let (mut parts, ()) = request.into_parts();
    if gatekeeper_proxy::fuzzing::check_request(&mut parts).is_ok() {
        let path = parts.uri.path();
        assert!(
            gatekeeper_proxy::fuzzing::remove_dot_segments(path).is_none(),
            "a dot segment left in an accepted request's path: {path:?}"
        );
    }
}

/// Dot-segment removal: the result is absolute, no longer than the path, and has no dot
/// segment left.
fn check_dot_segment_removal(path: &str) {
    let Some(normalized) = gatekeeper_proxy::fuzzing::remove_dot_segments(path) else {
        return;
    };
    assert!(
        normalized.starts_with('/'),
        "{path:?} became {normalized:?}"
    );
    assert!(
        normalized.len() <= path.len(),
        "{path:?} grew to {normalized:?}"
    );
    assert!(
        gatekeeper_proxy::fuzzing::remove_dot_segments(&normalized).is_none(),
        "{path:?} became {normalized:?}, which still has a dot segment"
    );
}

/// A config file as `gatekeeper check` reads it (key by key, then whole).
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gatekeeper::fuzzing::check_config(text);
    }
}

/// The static-upstreams plugin's YAML file, parsed with both kinds of backend ids.
pub fn upstreams_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gatekeeper_static_upstreams::fuzzing::parse_upstreams(text);
    }
}

/// One raw client connection to the operations HTTP server: the first byte picks the admin
/// socket's handler (even) or the metrics listener's (odd); the rest is what the client sends.
pub fn admin_http(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let _ = gatekeeper::fuzzing::serve_connection(selector % 2 == 1, rest);
}
