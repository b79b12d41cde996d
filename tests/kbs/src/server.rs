//! HTTP(S) transport: a tokio runtime on its own thread, hyper HTTP/1.1, rustls.
//!
//! Trustee serves with actix-web (`../shared/specs/kbs-protocol.md` §1.1); what matters to a
//! client is reproduced here: one route prefix, request bodies capped (default 2 MiB, Trustee
//! `payload_request_size`), keep-alive. Also the place where faults (`crate::faults`) are
//! applied and every request is recorded (`crate::observe`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt as _;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, Reply, Req, Shared, lock};
use crate::error::KbsError;
use crate::faults::FaultKind;
use crate::observe::{Endpoint, RecordedRequest};
use crate::session;

/// Response body: a buffer, or generated filler for the oversized-body fault.
#[derive(Debug)]
pub(crate) enum ReplyBody {
    Full(Option<Bytes>),
    Filler {
        sent: usize,
        total: usize,
        exact: bool,
    },
}

const FILLER_PREFIX: &[u8] = b"{\"token\":\"";
const FILLER_CHUNK: usize = 64 * 1024;

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Filler { sent, total, .. } => {
                if *sent >= *total {
                    return Poll::Ready(None);
                }
                let n = FILLER_CHUNK.min(*total - *sent);
                let chunk: Vec<u8> = (*sent..*sent + n)
                    .map(|i| {
                        if let Some(b) = FILLER_PREFIX.get(i) {
                            *b
                        } else if i + 2 == *total {
                            b'"'
                        } else if i + 1 == *total {
                            b'}'
                        } else {
                            b'A'
                        }
                    })
                    .collect();
                *sent += n;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(d) => d.is_none(),
            Self::Filler { sent, total, .. } => sent >= total,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Filler { sent, total, exact } => {
                if *exact {
                    SizeHint::with_exact((*total - *sent) as u64)
                } else {
                    SizeHint::default()
                }
            }
        }
    }
}

/// The error a service returns to make hyper close the connection without a response.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a test-kbs fault")
    }
}

impl std::error::Error for DropConnection {}

fn build_response(reply: Reply) -> Response<ReplyBody> {
    let mut builder = Response::builder().status(reply.status);
    if let Some(ct) = reply.content_type {
        builder = builder.header(hyper::header::CONTENT_TYPE, ct);
    }
    if let Some(cookie) = reply.set_cookie {
        builder = builder.header(hyper::header::SET_COOKIE, cookie);
    }
    let body = ReplyBody::Full((!reply.body.is_empty()).then(|| Bytes::from(reply.body)));
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(ReplyBody::Full(None));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn fault_response(
    kind: FaultKind,
    endpoint: Endpoint,
) -> Result<Response<ReplyBody>, DropConnection> {
    match kind {
        FaultKind::Drop => Err(DropConnection),
        FaultKind::Status(status) => {
            let body = format!("test-kbs injected status {status}\n").into_bytes();
            Ok(build_response(Reply {
                status,
                content_type: Some("text/plain"),
                body,
                ..Reply::default()
            }))
        }
        FaultKind::Unauthorized => {
            let e = if endpoint == Endpoint::Attest {
                KbsError::AttestFailed("injected stale session".to_owned())
            } else {
                KbsError::TokenNotFound
            };
            Ok(build_response(Reply::error(&e)))
        }
        FaultKind::Oversized { bytes, chunked } => {
            let mut r = Response::new(ReplyBody::Filler {
                sent: 0,
                total: bytes,
                exact: !chunked,
            });
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        FaultKind::Malformed => Ok(build_response(Reply {
            status: 200,
            content_type: Some("application/json"),
            body: b"{\"token\": \"eyJhbGciOi".to_vec(),
            ..Reply::default()
        })),
    }
}

fn header_map(headers: &hyper::HeaderMap) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// Handle one request: read, record, apply faults, dispatch, respond.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, DropConnection> {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let endpoint = Endpoint::classify(&method, &path);
    let body = http_body_util::Limited::new(body, shared.max_body)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes);
    let too_large = body.is_err();
    let body = body.unwrap_or_default();
    let bearer = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let json = if endpoint == Endpoint::AdminResource {
        None // resource uploads are secrets; keep them out of the log
    } else {
        serde_json::from_slice(&body).ok()
    };
    let record = RecordedRequest {
        seq: 0,
        method: method.clone(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        endpoint,
        headers: header_map(&parts.headers),
        session_cookie: session::cookie_from(&parts.headers),
        bearer,
        body_len: body.len(),
        json,
        status: None,
        fault: None,
        error: None,
    };
    let (index, seq) = {
        let mut log = lock(&shared.log);
        let index = log.push(record);
        let seq = log.entries.get(index).map_or(0, |e| e.seq);
        (index, seq)
    };
    let (delay, fault) = shared.faults.take(endpoint);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let fault_text = match (delay, fault) {
        (Some(d), Some(k)) => Some(format!("delay {d:?}, {k}")),
        (Some(d), None) => Some(format!("delay {d:?}")),
        (None, Some(k)) => Some(k.to_string()),
        (None, None) => None,
    };
    if let Some(kind) = fault {
        let result = fault_response(kind, endpoint);
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        lock(&shared.log).update(index, seq, |e| {
            e.status = status;
            e.fault = fault_text;
        });
        return result;
    }
    let reply = if too_large {
        Reply {
            status: 413,
            error: Some(format!("request body over {} bytes", shared.max_body)),
            ..Reply::default()
        }
    } else {
        api::dispatch(
            &shared,
            &Req {
                method: &method,
                path: &path,
                headers: &parts.headers,
                body: &body,
            },
        )
    };
    lock(&shared.log).update(index, seq, |e| {
        e.status = Some(reply.status);
        e.fault = fault_text;
        e.error.clone_from(&reply.error);
    });
    Ok(build_response(reply))
}

async fn serve_io<I>(io: I, shared: Arc<Shared>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle(Arc::clone(&shared), req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        .keep_alive(true);
    // Errors here are client disconnects and injected drops: nothing to report.
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

/// Accept loop; returns when `shutdown` changes or its sender is dropped.
pub(crate) async fn run(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors or similar: back off briefly instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await;
                    if let Ok(Ok(tls_stream)) = handshake {
                        serve_io(tls_stream, shared).await;
                    }
                }
                None => serve_io(stream, shared).await,
            }
        });
    }
}
