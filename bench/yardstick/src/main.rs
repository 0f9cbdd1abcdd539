//! The yardstick: a minimal reverse proxy on hyper 1, the bar scripts/bench.sh judges
//! gatekeeper against (issue 14). It forwards every request to one backend address, stripping
//! the `/b` prefix as the bench's other proxies do, on one current-thread tokio runtime with
//! hyper-util's pooled legacy client and mimalloc. No routing, plugins, logging or metrics:
//! whatever gatekeeper spends beyond this is gatekeeper's own work around hyper.
//!
//! Usage: `yardstick LISTEN_ADDR BACKEND_ADDR` (e.g. `yardstick 127.0.0.1:8080 127.0.0.1:9000`).

use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::{combinators::BoxBody, BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type ProxyBody = BoxBody<Bytes, hyper::Error>;
type BackendClient = Client<HttpConnector, Incoming>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: yardstick LISTEN_ADDR BACKEND_ADDR";
    let listen: SocketAddr = args.next().context(usage)?.parse().context("LISTEN_ADDR")?;
    let backend: SocketAddr = args
        .next()
        .context(usage)?
        .parse()
        .context("BACKEND_ADDR")?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, backend))
}

async fn serve(listen: SocketAddr, backend: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .context("bind LISTEN_ADDR")?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: BackendClient = Client::builder(TokioExecutor::new()).build(connector);
    let backend = backend.to_string();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: keep serving the connections already open.
                eprintln!("yardstick: accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let backend = backend.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), backend.clone(), request));
            // A client that goes away mid-request is not the yardstick's concern.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Sends `request` to the backend with the `/b` prefix stripped; 502 when the backend fails.
async fn forward(
    client: BackendClient,
    backend: String,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, hyper::Error> {
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let stripped = match path_and_query.strip_prefix("/b") {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path_and_query,
    };
    let uri = match Uri::builder()
        .scheme("http")
        .authority(backend.as_str())
        .path_and_query(stripped)
        .build()
    {
        Ok(uri) => uri,
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    *request.uri_mut() = uri;
    match client.request(request).await {
        Ok(response) => Ok(response.map(BodyExt::boxed)),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(code: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = code;
    response
}
