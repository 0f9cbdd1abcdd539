//! What every request must satisfy before anything routes it, and the one change made to every
//! request path (both request paths call [`check_request`] first):
//!
//! - an HTTP/1.1 request has exactly one `Host`, and it is a valid authority (RFC 9112 §3.2);
//!   a request in absolute form (`GET http://host/path`) takes its host from the URI, which
//!   replaces the `Host` header. HTTP/1.0 may omit `Host`; HTTP/2 carries `:authority`;
//! - a request's `Transfer-Encoding` is `chunked` once, alone: another coding (`gzip, chunked`,
//!   or `chunked` twice) would
//!   reach the backend without the header that names it, so it is refused with 501
//!   (RFC 9112 §6.1). hyper already drops a `Content-Length` sent next to `Transfer-Encoding`
//!   and the body is forwarded re-chunked, so such a request cannot desynchronise the backend
//!   connection;
//! - the path's dot segments (`.`, `..`, also percent-encoded as `%2e`) are removed
//!   (RFC 3986 §5.2.4), so that routing, plugins and the backend see the same path, and
//!   `/public/../admin` routes as `/admin`. Nothing else in the path is decoded or merged.

use http::header::{CONNECTION, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri, Version};

use crate::body::ProxyBody;

/// Why a request is refused (400, or 501 for a transfer coding); the connection is closed after
/// the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// HTTP/1.1 without `Host`.
    MissingHost,
    /// More than one `Host`.
    SeveralHosts,
    /// A `Host` that is not `host[:port]`.
    InvalidHost,
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedTransferCoding,
}

impl Rejection {
    /// A few words for the log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Rejection::MissingHost => "HTTP/1.1 request without Host",
            Rejection::SeveralHosts => "more than one Host header",
            Rejection::InvalidHost => "invalid Host header",
            Rejection::UnsupportedTransferCoding => "a transfer coding other than chunked",
        }
    }

    /// The error kind recorded (access log, metrics): `bad_request` or
    /// `unsupported_transfer_coding`.
    pub(crate) fn error_kind(self) -> &'static str {
        match self {
            Rejection::UnsupportedTransferCoding => "unsupported_transfer_coding",
            _ => "bad_request",
        }
    }

    /// The answer: 400 or 501, plain text, `Connection: close`.
    pub(crate) fn response(self) -> Response<ProxyBody> {
        let (status, text) = match self {
            Rejection::UnsupportedTransferCoding => {
                (StatusCode::NOT_IMPLEMENTED, "unsupported transfer coding\n")
            }
            _ => (StatusCode::BAD_REQUEST, "bad request\n"),
        };
        let mut response = Response::new(ProxyBody::full(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Checks the request head and removes the dot segments from its path.
pub(crate) fn check_request(parts: &mut Parts) -> Result<(), Rejection> {
    if !only_chunked(&parts.headers) {
        return Err(Rejection::UnsupportedTransferCoding);
    }
    check_host(parts)?;
    normalize_path(&mut parts.uri);
    Ok(())
}

/// Whether `Transfer-Encoding` is absent or names `chunked` once, alone (over all its lines:
/// `chunked, chunked` would be chunked twice, which no sender may do, RFC 9112 §6.1).
fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = 0;
    for value in headers.get_all(TRANSFER_ENCODING) {
        let Ok(text) = value.to_str() else {
            return false;
        };
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            codings += 1;
            if codings > 1 || !coding.eq_ignore_ascii_case("chunked") {
                return false;
            }
        }
    }
    true
}

fn check_host(parts: &mut Parts) -> Result<(), Rejection> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::SeveralHosts);
    }
    if parts.version != Version::HTTP_2 {
        // Absolute form: the URI's authority is the host (RFC 9112 §3.2.2).
        if let Some(authority) = parts.uri.authority() {
            if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(HOST, value);
            }
            return Ok(());
        }
    }
    match host {
        None if parts.version == Version::HTTP_11 => Err(Rejection::MissingHost),
        None => Ok(()),
        Some(value) if valid_host(value.as_bytes()) => Ok(()),
        Some(_) => Err(Rejection::InvalidHost),
    }
}

/// Whether `host` is `host[:port]` (RFC 9110 §7.2: a reg-name, IPv4 or bracketed IPv6 address,
/// and digits after the last `:`), checked without allocating (every request passes here).
fn valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.iter().rposition(|&b| b == b':') {
        // `[::1]` alone: the colons are inside the brackets.
        Some(colon) if !host[colon..].contains(&b']') => (&host[..colon], &host[colon + 1..]),
        _ => (host, &b""[..]),
    };
    let name_ok = match name {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        _ => {
            !name.is_empty()
                && name.iter().all(|&b| {
                    b.is_ascii_alphanumeric()
                        || matches!(
                            b,
                            b'-' | b'.'
                                | b'_'
                                | b'~'
                                | b'%'
                                | b'!'
                                | b'$'
                                | b'&'
                                | b'\''
                                | b'('
                                | b')'
                                | b'*'
                                | b'+'
                                | b','
                                | b';'
                                | b'='
                        )
                })
        }
    };
    name_ok && port.iter().all(u8::is_ascii_digit)
}

/// Removes the dot segments from the URI's path (keeping the query as it is).
fn normalize_path(uri: &mut Uri) {
    let Some(path) = remove_dot_segments(uri.path()) else {
        return;
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let Ok(path_and_query) = PathAndQuery::try_from(path_and_query) else {
        return;
    };
    let mut uri_parts = std::mem::take(uri).into_parts();
    uri_parts.path_and_query = Some(path_and_query);
    if let Ok(normalized) = Uri::from_parts(uri_parts) {
        *uri = normalized;
    }
}

/// `.` and `..` as a path segment, the dots possibly written `%2e` or `%2E`: how many dots.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut count = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && (rest[2] | 0x20) == b'e'
        {
            rest = &rest[3..];
        } else {
            return None;
        }
        count += 1;
        if count > 2 {
            return None;
        }
    }
    (count > 0).then_some(count)
}

/// The path without its dot segments (RFC 3986 §5.2.4), or `None` when it has none. An
/// absolute path stays absolute, and `..` never climbs above the root.
pub(crate) fn remove_dot_segments(path: &str) -> Option<String> {
    // Most paths have no dot segment: find that out without allocating.
    if !path.split('/').skip(1).any(|s| dots(s).is_some()) {
        return None;
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.into_iter().enumerate() {
        match dots(segment) {
            Some(count) => {
                if count == 2 {
                    kept.pop();
                }
                // `/a/..` and `/a/.` end in a directory: keep the trailing slash.
                if i == last {
                    kept.push("");
                }
            }
            None => kept.push(segment),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &kept {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    Some(normalized)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dot_segments_are_removed() {
        let cases = [
            ("/a/b/../c", Some("/a/c")),
            ("/a/./b", Some("/a/b")),
            ("/echo/../../etc/passwd", Some("/etc/passwd")),
            ("/echo/%2e%2e/x", Some("/x")),
            ("/echo/.%2E/x", Some("/x")),
            ("/a/b/..", Some("/a/")),
            ("/a/.", Some("/a/")),
            ("/..", Some("/")),
            ("/../", Some("/")),
            ("/a/..b/c", None),
            ("/a/.../c", None),
            ("/file.txt", None),
            ("/a//b", None),
            ("/", None),
        ];
        for (path, expected) in cases {
            assert_eq!(remove_dot_segments(path).as_deref(), expected, "{path}");
        }
    }

    fn parts(request: http::request::Builder) -> Parts {
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_host_rules() {
        let mut ok = parts(http::Request::get("/x").header(HOST, "a.test:8080"));
        assert!(check_request(&mut ok).is_ok());
        let mut none = parts(http::Request::get("/x"));
        assert_eq!(check_request(&mut none), Err(Rejection::MissingHost));
        let mut http10 = parts(http::Request::get("/x").version(Version::HTTP_10));
        assert!(check_request(&mut http10).is_ok());
        let mut h2 = parts(http::Request::get("https://a.test/x").version(Version::HTTP_2));
        assert!(check_request(&mut h2).is_ok());
        let mut two = parts(
            http::Request::get("/x")
                .header(HOST, "a.test")
                .header(HOST, "b.test"),
        );
        assert_eq!(check_request(&mut two), Err(Rejection::SeveralHosts));
        for good in [
            "a.test",
            "a.test:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8080",
            "xn--bcher-kva.test",
        ] {
            let mut request = parts(http::Request::get("/x").header(HOST, good));
            assert!(check_request(&mut request).is_ok(), "{good:?}");
        }
        for bad in [
            "a b",
            "",
            "user@a.test",
            "a.test/x",
            "a.test:80x",
            ":80",
            "[::1",
            "a.test?q",
        ] {
            let mut request = parts(http::Request::get("/x").header(HOST, bad));
            assert_eq!(
                check_request(&mut request),
                Err(Rejection::InvalidHost),
                "{bad:?}"
            );
        }
        // Absolute form: the URI's authority replaces Host.
        let mut absolute =
            parts(http::Request::get("http://b.test/x/../y?q=1").header(HOST, "a.test"));
        check_request(&mut absolute).unwrap();
        assert_eq!(absolute.headers[HOST], "b.test");
        assert_eq!(absolute.uri.to_string(), "http://b.test/y?q=1");
    }

    #[test]
    fn only_chunked_is_accepted_as_transfer_coding() {
        for (coding, accepted) in [
            ("chunked", true),
            ("Chunked", true),
            (" chunked ", true),
            ("gzip, chunked", false),
            ("chunked, gzip", false),
            ("identity", false),
            ("chunked, chunked", false),
            ("chunked,", true),
        ] {
            let mut request = parts(
                http::Request::post("/x")
                    .header(HOST, "a.test")
                    .header(TRANSFER_ENCODING, coding),
            );
            let outcome = check_request(&mut request);
            assert_eq!(outcome.is_ok(), accepted, "{coding:?}");
        }
        // `chunked` on two lines is chunked twice too.
        let mut twice = parts(
            http::Request::post("/x")
                .header(HOST, "a.test")
                .header(TRANSFER_ENCODING, "chunked")
                .header(TRANSFER_ENCODING, "chunked"),
        );
        assert!(check_request(&mut twice).is_err());
        assert_eq!(
            Rejection::UnsupportedTransferCoding.response().status(),
            StatusCode::NOT_IMPLEMENTED
        );
    }
}
