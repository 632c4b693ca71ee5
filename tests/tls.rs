//! Real TLS handshakes through the two HTTPS stacks that ship, both rustls over ring: reqwest (the OpenAI
//! provider's and the `http` executors' client) with the provider `lambent::tls` installs, and the AWS SDK's
//! client from `lambent_functions::aws_http_client` reading an SSM parameter. Every other fake is plain HTTP,
//! so without these a TLS stack left without a provider would only show after a deploy.
//!
//! The server is `fixtures/tls/localhost.crt`, a self-signed certificate for `localhost` (valid until 2126).

use std::sync::{Arc, Mutex};

use aws_smithy_http_client::tls::{TlsContext, TrustStore};
use lambent::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::helpers::http_client;

const CERT: &[u8] = include_bytes!("fixtures/tls/localhost.crt");
const KEY: &[u8] = include_bytes!("fixtures/tls/localhost.key");

/// An HTTPS server on 127.0.0.1 that answers every request with one JSON body, and keeps each request's head.
struct HttpsServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl HttpsServer {
    async fn start(body: &'static str) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(CERT).unwrap()],
                PrivateKeyDer::from_pem_slice(KEY).unwrap(),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    // A failed handshake (a client that does not trust us) just ends the connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Some(head) = read_request(&mut tls).await else { return };
                    seen.lock().unwrap().push(head);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body); returns its head, lower-cased.
async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(head);
        }
        let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn reqwest_verifies_and_completes_a_handshake_over_the_installed_provider() {
    let server = HttpsServer::start(r#"{"object": "list"}"#).await;

    // The client as the app builds it (system roots) refuses the self-signed certificate...
    let err = http_client().get(server.url("/v1/models")).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(server.requests().is_empty());

    // ...and one that trusts it gets through.
    lambent::tls::install_crypto_provider();
    let trusting =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(CERT).unwrap()]).build().unwrap();
    let body: Value = trusting.get(server.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert!(server.requests()[0].starts_with("get /v1/models http/1.1"), "{:?}", server.requests());
}

#[tokio::test]
async fn the_aws_sdk_reads_a_parameter_over_tls() {
    let server = HttpsServer::start(
        r#"{"Parameter": {"Name": "/lambent/openai-key", "Type": "SecureString", "Value": "sk-over-tls", "Version": 1}}"#,
    )
    .await;
    let trust = TlsContext::builder().with_trust_store(TrustStore::empty().with_pem_certificate(CERT)).build().unwrap();
    let sdk = lambent_functions::aws_config()
        .http_client(lambent_functions::aws_http_client(trust))
        .endpoint_url(server.url(""))
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_ssm::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await;
    let config =
        Config::from_lookup(|key| (key == "OPENAI_API_KEY_PARAMETER").then(|| "/lambent/openai-key".into())).unwrap();

    let resolved = lambent_functions::resolve_secrets(config, Some(sdk)).await.unwrap();

    assert_eq!(resolved.default_provider().api_key.as_ref().unwrap().expose(), "sk-over-tls");
    let requests = server.requests();
    assert!(requests[0].contains("x-amz-target: amazonssm.getparameter"), "{requests:?}");
}
