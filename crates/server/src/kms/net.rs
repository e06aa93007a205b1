//! Outbound connections to tenants' KMSs (and, later, SIEMs): TLS by default, and no SSRF
//! through a tenant's config.
//!
//! A tenant (or whoever edits its config) chooses the KMS endpoint, so an endpoint must not
//! be able to point the ES at the vendor's own network. Every address is checked **after**
//! DNS resolution, at connection time (so a name that later resolves elsewhere — DNS
//! rebinding — is checked again): loopback, unspecified, link-local, private (RFC 1918,
//! RFC 6598 shared, IPv6 unique-local), multicast, broadcast, documentation and benchmarking
//! ranges are refused unless the operator allow-lists them (`[outbound] allow = [...]`, CIDR
//! notation). IP literals in URLs are checked the same way.
//!
//! Plain `http://` endpoints are refused unless the operator sets `allow_plain_http` — meant
//! for test peers on an allow-listed loopback address, never for production.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::KmsError;

/// What outbound connections may reach. The default refuses every non-public address and
/// every plain-HTTP endpoint.
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    /// Networks allowed although non-public (e.g. `127.0.0.1/32` for test peers, or a
    /// tenant's private KMS behind a VPN).
    pub allow: Vec<IpNet>,
    /// Accept `http://` endpoints (tests only).
    pub allow_plain_http: bool,
    /// Extra trust anchors (PEM) besides the system's, e.g. a test CA or a private PKI.
    pub extra_roots_pem: Vec<Vec<u8>>,
}

impl OutboundPolicy {
    /// A policy that allows loopback (IPv4 and IPv6) and plain HTTP: for tests only.
    pub fn allow_loopback_for_tests() -> Self {
        Self {
            allow: vec![
                IpNet::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ],
            allow_plain_http: true,
            extra_roots_pem: Vec::new(),
        }
    }

    /// Whether `ip` may be connected to.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        public(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Checks one resolved address.
    pub fn check(&self, ip: IpAddr) -> Result<(), KmsError> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(KmsError::Unreachable(format!(
                "address {ip} is not allowed for outbound KMS connections \
                 (non-public; allow-list it in [outbound] allow)"
            )))
        }
    }

    /// Checks an endpoint URL before use: scheme, and the host if it is an IP literal
    /// (names are checked when they resolve, by [`GuardedResolver`]).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), KmsError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_plain_http => {}
            "http" => {
                return Err(KmsError::Other(
                    "plain http:// KMS endpoints are refused; use https://".into(),
                ));
            }
            other => return Err(KmsError::Other(format!("unsupported URL scheme '{other}'"))),
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(KmsError::Other("the endpoint URL has no host".into())),
        }
    }

    /// Resolves `host:port` and returns the permitted addresses, or an error naming why
    /// none is usable. For non-HTTP protocols (KMIP).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, KmsError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| KmsError::Unreachable(format!("cannot resolve {host}: {e}")))?
            .collect();
        filter(self, host, addrs)
    }

    /// Connects a TCP stream to the first permitted address of `host:port`.
    pub async fn connect_tcp(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, KmsError> {
        let mut last = None;
        for addr in self.resolve(host, port).await? {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = Some(KmsError::Unreachable(format!("{addr}: {e}"))),
                Err(_) => last = Some(KmsError::Timeout),
            }
        }
        Err(last.unwrap_or_else(|| KmsError::Unreachable(format!("no address for {host}"))))
    }

    /// The rustls client config: the system's roots plus [`Self::extra_roots_pem`], ring
    /// provider, TLS 1.2 and 1.3.
    pub fn tls_config(&self) -> Result<rustls::ClientConfig, KmsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut extra = Vec::new();
        for pem in &self.extra_roots_pem {
            for cert in rustls_pemfile_certs(pem)? {
                extra.push(cert);
            }
        }
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                .map_err(|e| KmsError::Other(format!("TLS trust store: {e}")))?;
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KmsError::Other(format!("TLS config: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }

    /// An HTTP client for REST KMS APIs: [`Self::tls_config`], the guarded resolver, no
    /// redirects (a redirect could lead past the endpoint check), no proxy from the
    /// environment, and `timeout` per request.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, KmsError> {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.tls_config()?)
            .dns_resolver(Arc::new(GuardedResolver(self.clone())))
            .https_only(!self.allow_plain_http)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| KmsError::Other(format!("HTTP client: {e}")))
    }
}

fn rustls_pemfile_certs(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, KmsError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KmsError::Other(format!("bad CA certificate PEM: {e}")))
}

fn filter(
    policy: &OutboundPolicy,
    host: &str,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, KmsError> {
    if addrs.is_empty() {
        return Err(KmsError::Unreachable(format!("{host} has no address")));
    }
    let allowed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| policy.permits(a.ip()))
        .collect();
    if allowed.is_empty() {
        // Name the first refused address: the operator needs it to allow-list.
        return Err(KmsError::Unreachable(format!(
            "{host} resolves only to non-public addresses ({}); outbound KMS connections \
             refuse them unless allow-listed",
            addrs[0].ip()
        )));
    }
    Ok(allowed)
}

/// reqwest's resolver, filtered by the policy.
struct GuardedResolver(OutboundPolicy);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = filter(&policy, &host, addrs)?;
            let iter: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(iter)
        })
    }
}

/// IPv4-mapped and -compatible IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether an address is globally routable (what a tenant's cloud KMS endpoint is).
fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, c, _] = ip.octets();
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_multicast()
                || ip.is_broadcast()
                || ip.is_documentation()
                || a == 0                                  // "this network"
                || (a == 100 && (b & 0xc0) == 64)          // 100.64/10 shared (CGNAT)
                || (a == 192 && b == 0 && c == 0)          // 192.0.0/24 IETF assignments
                || (a == 198 && (b & 0xfe) == 18)          // 198.18/15 benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(ip) => {
            let seg = ip.segments();
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00                  // fc00::/7 unique local
                || (seg[0] & 0xffc0) == 0xfe80                  // fe80::/10 link-local
                || (seg[0] & 0xffc0) == 0xfec0                  // fec0::/10 site-local
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)       // documentation
                || (seg[0] == 0x0064 && seg[1] == 0xff9b)       // NAT64 (embeds IPv4)
                || (seg[0] == 0x2002)                           // 6to4 (embeds IPv4)
                || ip.to_ipv4().is_some()) // IPv4-compatible ::a.b.c.d
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused_by_default() {
        let p = OutboundPolicy::default();
        for a in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!p.permits(ip(a)), "{a} should be refused");
            assert!(p.check(ip(a)).is_err());
        }
        for a in [
            "8.8.8.8",
            "52.94.1.1",
            "172.32.0.1",
            "2600:1f18::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(p.permits(ip(a)), "{a} should be allowed");
        }
    }

    #[test]
    fn allow_list_admits_exactly_its_networks() {
        let p = OutboundPolicy {
            allow: vec![
                "127.0.0.1/32".parse().unwrap(),
                "10.8.0.0/16".parse().unwrap(),
            ],
            ..OutboundPolicy::default()
        };
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(!p.permits(ip("127.0.0.2")));
        assert!(p.permits(ip("10.8.200.1")));
        assert!(!p.permits(ip("10.9.0.1")));
    }

    #[test]
    fn urls_need_https_and_a_permitted_literal() {
        let p = OutboundPolicy::default();
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(
            p.check_url(&u("https://kms.us-east-1.amazonaws.com/"))
                .is_ok()
        );
        assert!(
            p.check_url(&u("http://kms.us-east-1.amazonaws.com/"))
                .is_err()
        );
        assert!(p.check_url(&u("https://169.254.169.254/latest")).is_err());
        assert!(p.check_url(&u("https://[::1]:8200/")).is_err());
        assert!(p.check_url(&u("ftp://example.com/")).is_err());
        let t = OutboundPolicy::allow_loopback_for_tests();
        assert!(t.check_url(&u("http://127.0.0.1:4566/")).is_ok());
        assert!(t.check_url(&u("http://10.0.0.1/")).is_err());
    }

    #[tokio::test]
    async fn the_http_client_refuses_a_name_that_resolves_to_loopback() {
        // A listener on loopback that would answer if the client connected.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = OutboundPolicy {
            allow_plain_http: true,
            ..OutboundPolicy::default()
        };
        let client = p.http_client(Duration::from_secs(2)).unwrap();
        let err = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        assert!(format!("{err:?}").contains("non-public"), "{err:?}");
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let p = OutboundPolicy::default();
        let e = p.resolve("localhost", 80).await.unwrap_err();
        assert!(matches!(e, KmsError::Unreachable(m) if m.contains("non-public")));
        let t = OutboundPolicy::allow_loopback_for_tests();
        assert!(!t.resolve("localhost", 80).await.unwrap().is_empty());
    }
}
