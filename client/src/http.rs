//! A small HTTP/1.1 client for the gateway's JSON API, on hyper, over TLS (rustls on
//! ring) for an `https://` server.
//!
//! An https server's certificate is checked against the OS's trust store, so an
//! internal CA installed there is trusted; `SSL_CERT_FILE` / `SSL_CERT_DIR` replace the
//! store (rustls-native-certs). The WebSocket uses the same TLS settings.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shipwatch_protocol::api::ErrorBody;

use crate::{ClientError, Server};

/// How long one API request may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A non-2xx answer, before the command turns it into a [`ClientError`] in its own words.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub answer: ErrorBody,
}

/// Talks to one gateway with one set of credentials.
#[derive(Clone)]
pub struct ApiClient {
    server: Server,
    /// Sent as `Authorization: Bearer …`; never logged.
    token: Option<String>,
    /// What both HTTP and the WebSocket trust for an https server.
    tls: Arc<rustls::ClientConfig>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ApiClient {
    /// A client for `server`, sending `token` with every request.
    pub fn new(server: Server, token: Option<String>) -> Result<ApiClient, ClientError> {
        let tls = Arc::new(tls_config(&server)?);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(ApiClient {
            server,
            token,
            tls,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The TLS settings, for the WebSocket.
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// GET `path`, decoded; a refusal is handed back for the caller to explain.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Result<T, Refusal>, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// POST `body` as JSON to `path`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Result<T, Refusal>, ClientError> {
        let body = serde_json::to_vec(body).map_err(|source| ClientError::Decode {
            url: self.server.url(path),
            source,
        })?;
        self.call(Method::POST, path, Some(body)).await
    }

    /// POST without caring for the answer's body (202 of cancel).
    pub async fn post_empty(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Result<(), Refusal>, ClientError> {
        let body = serde_json::to_vec(body).map_err(|source| ClientError::Decode {
            url: self.server.url(path),
            source,
        })?;
        let (status, bytes) = self.send(Method::POST, path, Some(body)).await?;
        Ok(if status.is_success() {
            Ok(())
        } else {
            Err(refusal(status, &bytes))
        })
    }

    /// GET an NDJSON stream of events, handing them to `sink` a chunk at a time as they
    /// arrive (a 1M-line log never sits in memory whole).
    pub async fn get_ndjson(
        &self,
        path: &str,
        mut sink: impl FnMut(Vec<shipwatch_protocol::Event>) -> Result<(), ClientError>,
    ) -> Result<Result<(), Refusal>, ClientError> {
        let url = self.server.url(path);
        let mut pending: Vec<u8> = Vec::new();
        self.get_streamed(path, |data| {
            pending.extend_from_slice(data);
            let Some(end) = pending.iter().rposition(|b| *b == b'\n') else {
                return Ok(());
            };
            let events = pending[..end]
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(serde_json::from_slice)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| ClientError::Decode {
                    url: url.clone(),
                    source,
                })?;
            pending.drain(..=end);
            sink(events)
        })
        .await
    }

    /// GET `path`, handing its body to `sink` in the pieces it arrives in.
    pub async fn get_streamed(
        &self,
        path: &str,
        mut sink: impl FnMut(&[u8]) -> Result<(), ClientError>,
    ) -> Result<Result<(), Refusal>, ClientError> {
        let url = self.server.url(path);
        let unreachable = |e: Box<dyn std::error::Error + Send + Sync>| ClientError::Unreachable {
            url: url.clone(),
            source: e,
        };
        let request = self.request(Method::GET, &url, None)?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                secs: REQUEST_TIMEOUT.as_secs(),
            })?
            .map_err(|e| unreachable(Box::new(e)))?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| unreachable(Box::new(e)))?
                .to_bytes();
            return Ok(Err(refusal(status, &bytes)));
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| unreachable(Box::new(e)))?;
            if let Ok(data) = frame.into_data() {
                sink(&data)?;
            }
        }
        Ok(Ok(()))
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Usage(format!("{url}: {e}")))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Result<T, Refusal>, ClientError> {
        let (status, bytes) = self.send(method, path, body).await?;
        if !status.is_success() {
            return Ok(Err(refusal(status, &bytes)));
        }
        serde_json::from_slice(&bytes)
            .map(Ok)
            .map_err(|source| ClientError::Decode {
                url: self.server.url(path),
                source,
            })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let url = self.server.url(path);
        let request = self.request(method, &url, body)?;
        let exchange = async {
            let response =
                self.http
                    .request(request)
                    .await
                    .map_err(|e| ClientError::Unreachable {
                        url: url.clone(),
                        source: Box::new(e),
                    })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.clone(),
                    source: Box::new(e),
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                secs: REQUEST_TIMEOUT.as_secs(),
            })?
    }
}

/// rustls on ring trusting the OS's store; a plain http server reads no roots at all.
fn tls_config(server: &Server) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    if server.is_https() {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            return Err(ClientError::Usage(format!(
                "no trusted CA certificates to check {server} with \
                 (the OS's store, or SSL_CERT_FILE / SSL_CERT_DIR)"
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A refusal from a non-2xx answer, whatever its body held.
fn refusal(status: StatusCode, bytes: &[u8]) -> Refusal {
    let answer = serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
        error: String::from_utf8_lossy(bytes).trim().to_string(),
        field: None,
    });
    Refusal { status, answer }
}
