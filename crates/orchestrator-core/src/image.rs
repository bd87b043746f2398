//! Image references in Docker's grammar: `[domain[:port]/]path[:tag][@algo:hex]`.

use crate::error::{Error, Result};

const FIELD: &str = "image";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A syntactically valid image reference. Whether the image exists is the engine's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    full: String,
    /// Length of the repository part (domain and path, without tag or digest).
    repository_len: usize,
}

impl ImageRef {
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |why: &str| Error::invalid(FIELD, format!("{value:?} is not an image reference: {why}"));
        if value.is_empty() {
            return Err(invalid("empty"));
        }
        // The whole reference, as the API's schema states it (Docker bounds the repository alone
        // by the same number; a longer reference is not something anyone writes).
        if value.len() > MAX_NAME_LEN {
            return Err(invalid("longer than 255 characters"));
        }
        let (rest, digest) = match value.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (value, None),
        };
        if let Some(digest) = digest {
            let (algo, hex) = digest.split_once(':').ok_or_else(|| invalid("digest must be algorithm:hex"))?;
            let algo_ok = !algo.is_empty()
                && algo.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-_".contains(&b));
            if !algo_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("bad digest"));
            }
        }
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let first_ok = tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !first_ok
                || tag.len() > MAX_TAG_LEN
                || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                return Err(invalid("bad tag"));
            }
        }
        if repository.is_empty() || repository.len() > MAX_NAME_LEN {
            return Err(invalid("repository must be 1-255 characters"));
        }
        let mut components: Vec<&str> = repository.split('/').collect();
        let has_domain = components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost");
        if has_domain {
            let domain = components.remove(0);
            if !valid_domain(domain) {
                return Err(invalid("bad registry host"));
            }
        }
        if !components.iter().all(|c| valid_path_component(c)) {
            return Err(invalid(
                "path components must be lowercase letters and digits separated by '.', '_', '__' or '-'",
            ));
        }
        Ok(Self { full: value.to_string(), repository_len: repository.len() })
    }

    /// The repository: registry host (if any) and path, without tag or digest.
    pub fn repository(&self) -> &str {
        &self.full[..self.repository_len]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The digest the reference names (`sha256:...`), if it names one: such an image is
    /// pinned by whoever wrote it.
    pub fn digest(&self) -> Option<&str> {
        self.full.split_once('@').map(|(_, digest)| digest)
    }

    /// The reference pinned to `digest`: `10.0.0.1:5000/app@sha256:...`, the canonical form
    /// every engine pulls and runs (a tag beside a digest is one more thing to disagree on).
    pub fn pinned(&self, digest: &str) -> ImageRef {
        ImageRef { full: format!("{}@{digest}", self.repository()), repository_len: self.repository_len }
    }

    /// The registry host (`host[:port]`) the reference names, if it names one; `None` for the
    /// engine's default registry.
    pub fn registry(&self) -> Option<&str> {
        let (first, rest) = self.repository().split_once('/')?;
        (!rest.is_empty() && (first.contains(['.', ':']) || first == "localhost")).then_some(first)
    }
}

/// Whether `server` is a registry host as image references name one: `host[:port]`.
pub fn is_registry_host(server: &str) -> bool {
    valid_domain(server)
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && crate::address::is_hostname(host)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full)
    }
}

impl std::str::FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_is_pinned_to_a_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let tagged = ImageRef::parse("10.123.0.1:5000/app:2").unwrap();
        assert_eq!(tagged.digest(), None);
        let pinned = tagged.pinned(&digest);
        assert_eq!(pinned.as_str(), format!("10.123.0.1:5000/app@{digest}"));
        assert_eq!(pinned.digest(), Some(digest.as_str()));
        assert_eq!(pinned.repository(), "10.123.0.1:5000/app");
        // Pinned again (a rollback to a pinned revision): one digest, the newer.
        let other = format!("sha256:{}", "cd".repeat(32));
        assert_eq!(pinned.pinned(&other).as_str(), format!("10.123.0.1:5000/app@{other}"));
        assert_eq!(ImageRef::parse(pinned.as_str()).unwrap(), pinned);
    }

    #[test]
    fn accepts_common_references() {
        for ok in [
            "busybox",
            "local/busybox:1",
            "library/nginx:1.27-alpine",
            "localhost:5000/app",
            "registry.example.com/team/my_app:v2",
            "a__b/c-d/e.f",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let image = ImageRef::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(image.as_str(), ok);
        }
    }

    #[test]
    fn splits_repository_from_tag() {
        assert_eq!(ImageRef::parse("localhost:5000/app:3").unwrap().repository(), "localhost:5000/app");
        assert_eq!(ImageRef::parse("app").unwrap().repository(), "app");
        assert_eq!(ImageRef::parse("10.123.0.1:5000/app:1").unwrap().registry(), Some("10.123.0.1:5000"));
        assert_eq!(ImageRef::parse("local/busybox:1").unwrap().registry(), None);
        assert_eq!(ImageRef::parse("localhost/app").unwrap().registry(), Some("localhost"));
    }

    #[test]
    fn rejects_bad_references_naming_the_field() {
        for bad in ["", "Busybox", "a//b", "a:", "a:-x", "-a", "a_", "a@sha256:xyz", "a b", "a:b:c", "/a"] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(matches!(err, Error::Invalid { ref field, .. } if field == "image"), "{bad}: {err}");
        }
    }
}
