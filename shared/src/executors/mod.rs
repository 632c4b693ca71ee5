//! Server-side tool executors: what runs a tool call when a conversation asks for `auto_execute_tools`.
//!
//! A failing executor never fails the turn: its error becomes the tool's output, so the model sees it and
//! can answer accordingly.
//!
//! # Layout
//! - this file: the built-in executors (`echo`, `now`, `http`) and the SSRF guard every outgoing tool request
//!   goes through (public addresses only, unless the host is in `LAMBENT_TOOL_HOSTS`).
//! - [`mcp`]: MCP servers' tools — listing (cached per instance) and `tools/call`, over rmcp's Streamable HTTP
//!   client on the guarded HTTP clients.

pub mod mcp;

use std::error::Error;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use serde_json::json;

use crate::clock::{Clock, format_timestamp};
use crate::domain::{DEFAULT_HTTP_TIMEOUT, Executor, ToolCall};

/// The most an `http` executor reads from its endpoint; the rest is cut off.
pub const MAX_HTTP_OUTPUT_BYTES: usize = 64 * 1024;

/// What executors need from the process: HTTP clients and the hosts `http` executors may reach though private.
#[derive(Debug, Clone)]
pub struct ExecutorContext {
    /// For every URL not in the allowlist: reaches public addresses only.
    public: reqwest::Client,
    /// For URLs in the allowlist: reaches any address.
    allowlisted: reqwest::Client,
    /// `LAMBENT_TOOL_HOSTS`: host names (or `host:port`) an `http` executor may call even when they are private,
    /// loopback or link-local. Public hosts need no entry.
    allowed_hosts: Vec<String>,
}

impl ExecutorContext {
    pub fn new(allowed_hosts: Vec<String>, connect_timeout: Duration) -> Result<Self, reqwest::Error> {
        crate::tls::install_crypto_provider();
        // Redirects are not followed (rather than checked hop by hop): a public endpoint could otherwise send the
        // call on to a private address. A 3xx answer becomes an error output like any other non-2xx.
        let builder = || reqwest::Client::builder().connect_timeout(connect_timeout).redirect(Policy::none());
        Ok(Self {
            // No proxy: a proxy would resolve the name itself, past the resolver's check.
            public: builder().no_proxy().dns_resolver(PublicAddressesOnly).build()?,
            allowlisted: builder().build()?,
            allowed_hosts,
        })
    }

    pub async fn run(&self, executor: &Executor, call: &ToolCall, clock: &dyn Clock) -> String {
        match executor {
            Executor::Echo => call.arguments.clone(),
            Executor::Now => format_timestamp(clock.now()),
            Executor::Http { url, timeout_ms } => {
                let timeout = timeout_ms.map_or(DEFAULT_HTTP_TIMEOUT, Duration::from_millis);
                match self.post(url, timeout, call).await {
                    Ok(output) => output,
                    Err(message) => json!({"error": message}).to_string(),
                }
            }
        }
    }

    /// The HTTP client an MCP server at `url` is reached with: the same guard as an `http` executor's.
    pub(crate) fn guarded_client(&self, url: &str) -> Result<reqwest::Client, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad MCP server URL: {e}"))?;
        self.client_for(&parsed).cloned()
    }

    /// Why a request failed, as a tool's output may say it: the guard's refusal if that is the cause.
    pub(crate) fn refusal_in(error: &(dyn Error + 'static)) -> Option<String> {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(refused) = error.downcast_ref::<Refused>() {
                return Some(refused.0.clone());
            }
            cause = error.source();
        }
        None
    }

    fn allows(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let with_port = url.port_or_known_default().map(|port| format!("{host}:{port}"));
        self.allowed_hosts.iter().any(|allowed| allowed == host || Some(allowed) == with_port.as_ref())
    }

    /// The client for `url`, or the refusal when its host is an address literal that is not public (a literal
    /// never reaches the resolver, so it is checked here).
    fn client_for(&self, url: &reqwest::Url) -> Result<&reqwest::Client, String> {
        if self.allows(url) {
            return Ok(&self.allowlisted);
        }
        let host = url.host_str().unwrap_or_default();
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) if is_non_public(ip) => Err(Refused::address(host).0),
            _ => Ok(&self.public),
        }
    }

    async fn post(&self, url: &str, timeout: Duration, call: &ToolCall) -> Result<String, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad executor URL: {e}"))?;
        let client = self.client_for(&parsed)?;
        let body = json!({"name": call.name, "call_id": call.call_id, "arguments": call.arguments});
        let exchange = async {
            let response = client.post(parsed).json(&body).send().await.map_err(|e| match Refused::behind(&e) {
                Some(refused) => refused.0.clone(),
                // Without the URL: its query may hold a secret the model and the client must not see.
                None => format!("tool call failed: {}", e.without_url()),
            })?;
            let status = response.status();
            let mut bytes = Vec::new();
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| format!("tool response broke off: {}", e.without_url()))?;
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_HTTP_OUTPUT_BYTES {
                    bytes.truncate(MAX_HTTP_OUTPUT_BYTES);
                    break;
                }
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if status.is_success() { Ok(text) } else { Err(format!("tool endpoint answered HTTP {status}: {text}")) }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("tool endpoint did not answer within {} ms", timeout.as_millis()))?
    }
}

/// Why an `http` executor may not call a host; its message is the tool's output.
#[derive(Debug)]
struct Refused(String);

impl Refused {
    fn address(host: &str) -> Self {
        Self(format!("the tool's host {host} is a private, loopback or link-local address not in LAMBENT_TOOL_HOSTS"))
    }

    fn name(host: &str) -> Self {
        Self(format!(
            "the tool's host {host} resolves only to private, loopback or link-local addresses and is not in \
             LAMBENT_TOOL_HOSTS"
        ))
    }

    /// The resolver's refusal, if that is why a request failed: reqwest wraps it a few levels deep.
    fn behind(error: &reqwest::Error) -> Option<&Self> {
        let mut cause: Option<&(dyn Error + 'static)> = Some(error);
        while let Some(error) = cause {
            if let Some(refused) = error.downcast_ref() {
                return Some(refused);
            }
            cause = error.source();
        }
        None
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Refused {}

/// Resolves names as the system does, then drops every address that is not public. The check sits here, not
/// before the request, because the connection uses exactly these addresses: a name that answers differently on
/// a second lookup (DNS rebinding) cannot slip past it.
struct PublicAddressesOnly;

impl Resolve for PublicAddressesOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = resolved.filter(|addr| !is_non_public(addr.ip())).collect();
            if public.is_empty() {
                return Err(Refused::name(&host).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Whether an address is anything but public unicast: loopback, private, link-local (the cloud metadata address
/// 169.254.169.254 among them), shared (CGNAT), unique-local, multicast, broadcast, unspecified, documentation,
/// benchmarking or reserved, or an IPv6 form that leads to such an IPv4 address.
fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_non_public_v4(ip),
        IpAddr::V6(ip) => is_non_public_v6(ip),
    }
}

fn is_non_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        // Stable std has no methods for these yet: "this network" 0/8 (0.0.0.0 among it), shared address space
        // 100.64/10, IETF protocol assignments 192.0.0/24, benchmarking 198.18/15, reserved 240/4.
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a, b, c) == (192, 0, 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_non_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    // These lead to the IPv4 address they carry: IPv4-mapped ::ffff:0:0/96 (a dual-stack socket connects to it
    // directly), NAT64 64:ff9b::/96 and 6to4 2002::/16 (through a gateway).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_non_public_v4(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_non_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_non_public_v4(embedded(s[1], s[2]));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || ip.is_multicast()
        // Only 2000::/3 is global unicast; the rest (IPv4-compatible ::/96, site-local, discard-only...) is
        // reserved. Within it, 2001:db8::/32 and 3fff::/20 are for documentation.
        || s[0] & 0xe000 != 0x2000
        || (s[0], s[1]) == (0x2001, 0xdb8)
        || s[0] & 0xfff0 == 0x3ff0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_the_classification() {
        let non_public = [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
        ];
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "172.15.255.255",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for ip in non_public {
            assert!(is_non_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in public {
            assert!(!is_non_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn private_address_literals_are_refused_unless_allowlisted() {
        let ctx = ExecutorContext::new(vec!["tools.internal".into(), "127.0.0.1:9000".into()], Duration::from_secs(1))
            .unwrap();
        let client = |url: &str| ctx.client_for(&url.parse().unwrap()).map(|client| client as *const _);

        assert_eq!(client("http://127.0.0.1:9000/x"), Ok(&ctx.allowlisted as *const _));
        assert_eq!(client("https://tools.internal/x"), Ok(&ctx.allowlisted as *const _));
        assert_eq!(client("https://tools.example/x"), Ok(&ctx.public as *const _), "a name is checked on resolution");
        assert_eq!(client("http://8.8.8.8/x"), Ok(&ctx.public as *const _));
        assert_eq!(
            client("http://127.0.0.1:9001/x"),
            Err("the tool's host 127.0.0.1 is a private, loopback or link-local address not in LAMBENT_TOOL_HOSTS"
                .into())
        );
        for url in ["http://[::1]/", "http://[::ffff:7f00:1]/", "http://0x7f.1/", "http://2130706433/", "http://0/"] {
            assert!(client(url).is_err(), "{url} is loopback in disguise");
        }
    }
}
