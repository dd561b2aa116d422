//! Outbound HTTP policy: which `scheme://host:port` a guest may call.
//!
//! The shape is Spin's `allowed_outbound_hosts`: `https://api.example.com`,
//! `http://127.0.0.1:8080`, `https://*.example.com`, `http://localhost:*`,
//! `*://*:*` (anything). A missing port means the scheme's default port.
//! The default policy denies everything.

use std::fmt;
use std::str::FromStr;

/// A set of allowed outbound destinations. Empty denies all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
}

impl OutboundPolicy {
    /// The policy that denies every outbound request.
    pub fn deny_all() -> Self {
        OutboundPolicy::default()
    }

    /// Parses each pattern; fails on the first invalid one.
    pub fn from_patterns<S: AsRef<str>>(
        patterns: impl IntoIterator<Item = S>,
    ) -> Result<Self, InvalidPattern> {
        let allowed = patterns
            .into_iter()
            .map(|pattern| pattern.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(OutboundPolicy { allowed })
    }

    /// Whether a request to `uri` is allowed.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(scheme) = uri.scheme_str() else {
            return false;
        };
        let Some(host) = uri.host() else {
            return false;
        };
        let Some(port) = uri.port_u16().or_else(|| default_port(scheme)) else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed
            .iter()
            .any(|allowed| allowed.matches(scheme, host, port))
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.allowed.iter().map(ToString::to_string)
    }
}

/// A pattern that is not of the form `scheme://host[:port]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid outbound host pattern {pattern:?}: {reason}; expected `scheme://host[:port]`, e.g. `https://api.example.com` or `http://127.0.0.1:*`"
)]
pub struct InvalidPattern {
    /// The rejected pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
    /// The port was left out: it follows the scheme's default.
    port_default: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`: any strict subdomain.
    SubdomainOf(String),
    Exact(String),
}

impl AllowedHost {
    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self
            .scheme
            .as_deref()
            .is_none_or(|allowed| allowed.eq_ignore_ascii_case(scheme));
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(allowed) => allowed.eq_ignore_ascii_case(host),
            HostPattern::SubdomainOf(parent) => {
                let host = host.to_ascii_lowercase();
                host.len() > parent.len() + 1
                    && host.ends_with(parent.as_str())
                    && host.as_bytes()[host.len() - parent.len() - 1] == b'.'
            }
        };
        let port_ok = match (self.port, self.port_default) {
            (Some(allowed), _) => allowed == port,
            (None, true) => default_port(scheme) == Some(port),
            (None, false) => true,
        };
        scheme_ok && host_ok && port_ok
    }
}

impl FromStr for AllowedHost {
    type Err = InvalidPattern;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidPattern {
            pattern: pattern.to_string(),
            reason,
        };
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| invalid("missing `://`"))?;
        let scheme = match scheme {
            "*" => None,
            "" => return Err(invalid("empty scheme")),
            s if s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                Some(s.to_ascii_lowercase())
            }
            _ => return Err(invalid("scheme has invalid characters")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(invalid("paths are not allowed, only scheme, host and port"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| invalid("bad host or port"))?;
        let host = match host {
            "" => return Err(invalid("empty host")),
            "*" => HostPattern::Any,
            h if h.starts_with("*.") && h.len() > 2 && !h[2..].contains('*') => {
                HostPattern::SubdomainOf(h[2..].to_ascii_lowercase())
            }
            h if h.contains('*') => {
                return Err(invalid("`*` may only be the whole host or a leading `*.`"));
            }
            h => HostPattern::Exact(h.to_ascii_lowercase()),
        };
        let (port, port_default) = match port {
            None => {
                if scheme.as_deref().is_some_and(|s| default_port(s).is_none()) {
                    return Err(invalid("no port given and the scheme has no default port"));
                }
                (None, true)
            }
            Some("*") => (None, false),
            Some(p) => (
                Some(
                    p.parse()
                        .map_err(|_| invalid("port is not a number 0-65535"))?,
                ),
                false,
            ),
        };
        Ok(AllowedHost {
            scheme,
            host,
            port,
            port_default,
        })
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_deref().unwrap_or("*"))?;
        match &self.host {
            HostPattern::Any => write!(f, "*")?,
            HostPattern::SubdomainOf(parent) => write!(f, "*.{parent}")?,
            HostPattern::Exact(host) if host.contains(':') => write!(f, "[{host}]")?,
            HostPattern::Exact(host) => write!(f, "{host}")?,
        }
        match (self.port, self.port_default) {
            (Some(port), _) => write!(f, ":{port}"),
            (None, true) => Ok(()),
            (None, false) => write!(f, ":*"),
        }
    }
}

/// Splits `host[:port]`, with IPv6 hosts in brackets.
fn split_host_port(rest: &str) -> Option<(&str, Option<&str>)> {
    if let Some(after_bracket) = rest.strip_prefix('[') {
        let (host, tail) = after_bracket.split_once(']')?;
        return match tail {
            "" => Some((host, None)),
            t => Some((host, Some(t.strip_prefix(':')?))),
        };
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((rest, None)),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(patterns: &[&str], uri: &str, expect: bool) {
        let policy = OutboundPolicy::from_patterns(patterns).expect("valid patterns");
        let uri: http::Uri = uri.parse().expect("valid uri");
        assert_eq!(policy.allows(&uri), expect, "{patterns:?} vs {uri}");
    }

    #[test]
    fn allow_list_matching() {
        check(&[], "http://127.0.0.1:8080/", false);
        check(&["http://127.0.0.1:8080"], "http://127.0.0.1:8080/x", true);
        check(&["http://127.0.0.1:8080"], "http://127.0.0.1:8081/x", false);
        check(
            &["http://127.0.0.1:8080"],
            "https://127.0.0.1:8080/x",
            false,
        );
        check(&["http://127.0.0.1:*"], "http://127.0.0.1:1/", true);
        check(&["https://example.com"], "https://example.com/", true);
        check(&["https://example.com"], "https://example.com:8443/", false);
        check(&["https://*.example.com"], "https://api.example.com/", true);
        check(&["https://*.example.com"], "https://example.com/", false);
        check(&["https://*.example.com"], "https://badexample.com/", false);
        check(&["*://*:*"], "http://anything.test:9/", true);
        check(&["http://[::1]:80"], "http://[::1]/", true);
        check(&["http://LOCALHOST:80"], "http://localhost/", true);
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        for bad in [
            "example.com",
            "http://",
            "http://a/b",
            "http://a:x",
            "http://a*b",
            "ftp://a",
        ] {
            assert!(
                OutboundPolicy::from_patterns([bad]).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for pattern in [
            "https://*.example.com",
            "http://127.0.0.1:*",
            "*://*:*",
            "http://[::1]:80",
        ] {
            let policy = OutboundPolicy::from_patterns([pattern]).expect("valid");
            let shown: Vec<_> = policy.patterns().collect();
            assert_eq!(shown, [pattern]);
        }
    }
}
