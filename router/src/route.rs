//! Which function a request names: the first DNS label of its Host, or the
//! `/fn/NAME/` prefix of its path. Pure: no table, no I/O.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Most bytes of a DNS name.
const HOSTNAME_BYTES_MAX: usize = 253;

/// Most bytes of one DNS label, and so of a function name.
pub(crate) const LABEL_BYTES_MAX: usize = 63;

/// A request's function and the path it sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The function name (a DNS label).
    pub name: String,
    /// What the function sees: path and query, starting with `/`.
    pub path_and_query: String,
}

/// Why no function could be read from a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// The Host header is malformed (400).
    BadHost {
        /// The header as sent (lossy).
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `/fn/NAME/` with a NAME that cannot exist (400).
    BadName {
        /// The rejected name.
        name: String,
    },
    /// Neither the Host nor the path names a function (404).
    NoName {
        /// The Host header, for the example in the answer.
        host: Option<String>,
    },
}

impl RouteError {
    /// The HTTP status to answer with.
    pub(crate) fn status(&self) -> http::StatusCode {
        match self {
            RouteError::BadHost { .. } | RouteError::BadName { .. } => {
                http::StatusCode::BAD_REQUEST
            }
            RouteError::NoName { .. } => http::StatusCode::NOT_FOUND,
        }
    }

    /// A message for the client that says what to send instead.
    pub(crate) fn message(&self) -> String {
        match self {
            RouteError::BadHost { host, reason } => {
                format!("invalid Host header {host:?}: {reason}")
            }
            RouteError::BadName { name } => format!(
                "invalid function name {name:?} in /fn/{name}/: use 1 to 63 lowercase letters, digits or '-'"
            ),
            RouteError::NoName { host } => {
                let host = host.as_deref().unwrap_or("<router-host>");
                format!(
                    "this request names no function; call http://NAME.{host}/ or http://{host}/fn/NAME/"
                )
            }
        }
    }
}

/// Whether `name` can be a function name: a lowercase DNS label.
pub(crate) fn is_name(name: &str) -> bool {
    (1..=LABEL_BYTES_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The function a request names. The Host wins when it has a name; the
/// path is then passed unchanged.
pub(crate) fn target(host: Option<&str>, uri: &http::Uri) -> Result<Target, RouteError> {
    if let Some(host) = host
        && let Some(name) = name_from_host(host)?
    {
        let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
        if !path_and_query.starts_with('/') {
            return Err(RouteError::NoName {
                host: Some(host.to_string()),
            });
        }
        return Ok(Target {
            name,
            path_and_query: path_and_query.to_string(),
        });
    }
    from_path(uri)?.ok_or_else(|| RouteError::NoName {
        host: host.map(str::to_string),
    })
}

/// `/fn/NAME/rest?query` → (`NAME`, `/rest?query`).
fn from_path(uri: &http::Uri) -> Result<Option<Target>, RouteError> {
    let Some(rest) = uri.path().strip_prefix("/fn/") else {
        return Ok(None);
    };
    let (name, tail) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if name.is_empty() {
        return Ok(None);
    }
    if !is_name(name) {
        return Err(RouteError::BadName {
            name: name.to_string(),
        });
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{tail}?{query}"),
        None => tail.to_string(),
    };
    Ok(Some(Target {
        name: name.to_string(),
        path_and_query,
    }))
}

/// The name in a Host header: its first label when the host is a DNS
/// name of two labels or more. `Ok(None)` for IP addresses and single
/// labels (`localhost`).
pub(crate) fn name_from_host(host: &str) -> Result<Option<String>, RouteError> {
    let bad = |reason| RouteError::BadHost {
        host: host.to_string(),
        reason,
    };
    if let Some(bracketed) = host.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' in an IPv6 address"))?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address between '[' and ']'"))?;
        if !after.is_empty() {
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("unexpected text after the IPv6 address"))?;
            check_port(port).map_err(bad)?;
        }
        return Ok(None);
    }
    let hostname = match host.rsplit_once(':') {
        Some((hostname, port)) => {
            check_port(port).map_err(bad)?;
            hostname
        }
        None => host,
    };
    let hostname = hostname.strip_suffix('.').unwrap_or(hostname);
    if hostname.is_empty() {
        return Err(bad("empty host name"));
    }
    if hostname.len() > HOSTNAME_BYTES_MAX {
        return Err(bad("host name longer than 253 bytes"));
    }
    let hostname = hostname.to_ascii_lowercase();
    for label in hostname.split('.') {
        if label.is_empty() {
            return Err(bad("empty label (two dots in a row or a leading dot)"));
        }
        if !is_name(label) {
            return Err(bad(
                "labels are 1 to 63 letters, digits or '-' (no '_', spaces or other characters)",
            ));
        }
    }
    if hostname.parse::<Ipv4Addr>().is_ok() {
        return Ok(None);
    }
    let mut labels = hostname.split('.');
    match (labels.next(), labels.next()) {
        (Some(first), Some(_)) => Ok(Some(first.to_string())),
        _ => Ok(None),
    }
}

fn check_port(port: &str) -> Result<(), &'static str> {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    if digits && port.parse::<u16>().is_ok() {
        Ok(())
    } else {
        Err("the port is not a number from 0 to 65535")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expect`: `name path` on success, `400`/`404` on failure.
    fn check(host: Option<&str>, uri: &str, expect: &str) {
        let uri: http::Uri = uri.parse().expect("test URIs parse");
        let got = match target(host, &uri) {
            Ok(target) => format!("{} {}", target.name, target.path_and_query),
            Err(e) => e.status().as_u16().to_string(),
        };
        assert_eq!(got, expect, "host {host:?}, uri {uri}");
    }

    #[test]
    fn host_names_the_function_and_keeps_the_path() {
        check(Some("hello.localhost:7000"), "/a/b?x=1", "hello /a/b?x=1");
        check(Some("hello.localhost"), "/", "hello /");
        check(Some("Hello.Example.COM."), "/fn/x/y", "hello /fn/x/y");
        check(Some("a-1.b.c.d"), "/", "a-1 /");
    }

    #[test]
    fn path_names_the_function_when_the_host_cannot() {
        check(
            Some("127.0.0.1:7000"),
            "/fn/hello/a/b?x=1",
            "hello /a/b?x=1",
        );
        check(Some("localhost:7000"), "/fn/hello", "hello /");
        check(Some("localhost"), "/fn/hello?x=1", "hello /?x=1");
        check(Some("[::1]:7000"), "/fn/hello/", "hello /");
        check(None, "/fn/hello/z", "hello /z");
    }

    #[test]
    fn no_name_is_404() {
        check(Some("127.0.0.1:7000"), "/", "404");
        check(Some("localhost"), "/fn/", "404");
        check(None, "/other", "404");
    }

    #[test]
    fn malformed_hosts_and_names_are_400() {
        check(Some("hello..localhost"), "/", "400");
        check(Some(".localhost"), "/", "400");
        check(Some("he_llo.localhost"), "/", "400");
        check(Some("hello.localhost:port"), "/", "400");
        check(Some("hello.localhost:70000"), "/", "400");
        check(Some("hello.localhost:"), "/", "400");
        check(Some(""), "/", "400");
        check(Some("[::1"), "/", "400");
        check(Some("[::1]x"), "/", "400");
        check(Some(&format!("{}.x", "a".repeat(64))), "/", "400");
        check(Some("localhost"), "/fn/Hello/", "400");
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(is_name("hello-2"));
        assert!(is_name(&"a".repeat(63)));
        assert!(!is_name(&"a".repeat(64)));
        assert!(!is_name(""));
        assert!(!is_name("Hello"));
        assert!(!is_name("a.b"));
    }
}
