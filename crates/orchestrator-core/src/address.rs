//! Where a node's Docker Engine API listens: `unix:///path`, `tcp://host:port`,
//! `http://host:port` or `https://host:port`.

use std::sync::Arc;

use crate::error::{Error, Result};

const FIELD: &str = "address";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Unix,
    /// Plain TCP; Docker's own spelling of `http`.
    Tcp,
    Http,
    Https,
}

/// A parsed and checked engine address. Displays as the operator wrote it. Shared text: every
/// read of the nodes clones each one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineAddress {
    original: Arc<str>,
    scheme: Scheme,
    /// Socket path for `unix`, `host:port` otherwise.
    target: Arc<str>,
}

impl EngineAddress {
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |why: &str| Error::invalid(FIELD, format!("{value:?}: {why}"));
        // `https://` + a 253-character host + `:65535/`: nothing valid is longer.
        if value.len() > MAX_ADDRESS_LEN {
            return Err(invalid("longer than 268 characters"));
        }
        let (scheme, rest) = value
            .split_once("://")
            .ok_or_else(|| invalid("expected unix:///path, tcp://host:port, http://host:port or https://host:port"))?;
        let scheme = match scheme {
            "unix" => Scheme::Unix,
            "tcp" => Scheme::Tcp,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(invalid(&format!("unsupported scheme {other:?} (use unix, tcp, http or https)"))),
        };
        if scheme == Scheme::Unix {
            if !rest.starts_with('/') || rest.len() < 2 || rest.contains('\0') {
                return Err(invalid("a unix socket needs an absolute path, e.g. unix:///var/run/docker.sock"));
            }
            return Ok(Self { original: value.into(), scheme, target: rest.into() });
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| invalid("missing :port"))?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| invalid("port must be 1-65535"))?;
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            is_hostname(host)
        };
        if !host_ok {
            return Err(invalid("bad host"));
        }
        Ok(Self { original: value.into(), scheme, target: format!("{host}:{port}").into() })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The socket path (`unix`) or `host:port` (the others).
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The host the engine is reached at (a name, an IPv4 or a bracketed IPv6 address): where
    /// ports it publishes are reached too. `None` for a unix socket.
    pub fn host(&self) -> Option<&str> {
        (self.scheme != Scheme::Unix).then(|| self.target.rsplit_once(':').map_or(&*self.target, |(h, _)| h))
    }
}

/// A DNS host name or IPv4 address: dot-separated labels of letters, digits and inner '-'.
pub const MAX_ADDRESS_LEN: usize = 268;

pub(crate) fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl std::fmt::Display for EngineAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.original)
    }
}

impl std::str::FromStr for EngineAddress {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        let a = EngineAddress::parse("unix:///run/docker.sock").unwrap();
        assert_eq!((a.scheme(), a.target()), (Scheme::Unix, "/run/docker.sock"));
        let a = EngineAddress::parse("tcp://10.123.0.11:2375").unwrap();
        assert_eq!((a.scheme(), a.target()), (Scheme::Tcp, "10.123.0.11:2375"));
        let a = EngineAddress::parse("http://node-1.local:2375/").unwrap();
        assert_eq!((a.scheme(), a.target()), (Scheme::Http, "node-1.local:2375"));
        let a = EngineAddress::parse("https://[::1]:2376").unwrap();
        assert_eq!((a.scheme(), a.target()), (Scheme::Https, "[::1]:2376"));
        assert_eq!(a.to_string(), "https://[::1]:2376");
    }

    #[test]
    fn rejects_bad_addresses_naming_the_field() {
        for bad in [
            "",
            "docker.sock",
            "unix://relative.sock",
            "ftp://host:21",
            "tcp://host",
            "tcp://host:0",
            "tcp://host:70000",
            "tcp://:2375",
            "tcp://bad_host:2375",
            "tcp://[zz]:1",
        ] {
            let err = EngineAddress::parse(bad).unwrap_err();
            assert!(matches!(err, Error::Invalid { ref field, .. } if field == "address"), "{bad}: {err}");
        }
    }
}
