//! `test-backend`: an echo backend for the integration suites that speaks HTTP/1.1 and
//! plaintext HTTP/2 (h2c with prior knowledge) on one port, so a suite can see which protocol
//! gatekeeper used. Like `integration/backend.py`, it answers every request with a JSON echo:
//!
//! ```json
//! {"backend":"NAME","version":"HTTP/2.0","method":"GET","path":"/x","query":"a=1","headers":{...}}
//! ```
//!
//! `/slow?ms=N` waits N milliseconds first. Each request is printed to stdout when it arrives
//! (`start GET /path HTTP/1.1`) and just before it is answered (`end GET /path`), so a suite can
//! wait until a request reached the backend and see which requests overlapped.
//!
//! ```text
//! test-backend --port-file FILE [--name NAME]
//! ```
//!
//! It binds 127.0.0.1 on a free port and writes the port to FILE (atomically) once it listens.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

struct Args {
    port_file: String,
    name: String,
}

fn parse_args() -> Result<Args, String> {
    let mut port_file = None;
    let mut name = "backend".to_string();
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let value = words.next().ok_or(format!("{word} needs a value"))?;
        match word.as_str() {
            "--port-file" => port_file = Some(value),
            "--name" => name = value,
            _ => return Err(format!("unknown argument {word}")),
        }
    }
    let port_file = port_file.ok_or("--port-file is required")?;
    Ok(Args { port_file, name })
}

/// Prints `line` to stdout at once (errors ignored: the log is only for the suites).
fn print_line(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The JSON echo of `request`.
async fn echo(name: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let request_line = format!("{} {}", request.method(), request.uri().path());
    print_line(&format!("start {request_line} {:?}", request.version()));
    let query = request.uri().query().unwrap_or_default().to_string();
    if request.uri().path().starts_with("/slow") {
        let ms = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("ms="))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let body = serde_json::json!({
        "backend": name,
        "version": format!("{:?}", request.version()),
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": query,
        "headers": headers,
    });
    print_line(&format!("end {request_line}"));
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("test-backend: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("test-backend: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let written = listener.local_addr().and_then(|addr| {
        let tmp = format!("{}.tmp", args.port_file);
        std::fs::write(&tmp, addr.port().to_string())?;
        std::fs::rename(&tmp, &args.port_file)
    });
    if let Err(e) = written {
        eprintln!("test-backend: cannot write the port file: {e}");
        return ExitCode::FAILURE;
    }
    let name: &'static str = Box::leak(args.name.into_boxed_str());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service =
                service_fn(
                    move |request| async move { Ok::<_, Infallible>(echo(name, request).await) },
                );
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
