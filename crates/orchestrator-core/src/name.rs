//! Names of nodes and deployments: DNS labels (RFC 1123), so they can be used in container
//! names, Docker labels, URLs and host names without escaping.

use crate::error::{Error, Result};
use crate::image::ImageRef;

pub const MAX_NAME_LEN: usize = 63;

fn validate_label(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(Error::invalid(field, format!("must be 1-{MAX_NAME_LEN} characters, got {}", value.len())));
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(Error::invalid(field, format!("{value:?} may contain only lowercase letters, digits and '-'")));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(Error::invalid(field, format!("{value:?} must start and end with a letter or digit")));
    }
    Ok(())
}

macro_rules! label_name {
    ($(#[$doc:meta])* $ty:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate_label($field, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

label_name!(
    /// A node's unique name, e.g. `node-1`.
    NodeName,
    "name"
);
label_name!(
    /// A deployment's unique name, e.g. `web`.
    DeploymentName,
    "name"
);

impl DeploymentName {
    /// The name a deployment gets when the client gives none: the image's last path component,
    /// lowercased, with anything outside a DNS label replaced by '-'
    /// (`registry:5000/team/my_app:1.2` -> `my-app`).
    pub fn from_image(image: &ImageRef) -> Result<Self> {
        let base = image.repository().rsplit('/').next().unwrap_or_default();
        let mut name: String =
            base.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        name.truncate(MAX_NAME_LEN);
        let name = name.trim_matches('-').to_string();
        Self::new(name)
            .map_err(|_| Error::invalid("name", format!("cannot derive a name from image {image}; give one")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "node-1", "0", &"x".repeat(63)] {
            assert!(NodeName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_labels_naming_the_field() {
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", &"x".repeat(64)] {
            let err = NodeName::new(bad).unwrap_err();
            assert!(matches!(err, Error::Invalid { ref field, .. } if field == "name"), "{bad}: {err}");
        }
    }

    #[test]
    fn derives_name_from_image() {
        let image = ImageRef::parse("registry.local:5000/team/my_app:1.2").unwrap();
        assert_eq!(DeploymentName::from_image(&image).unwrap().as_str(), "my-app");
        let image = ImageRef::parse("local/busybox:1").unwrap();
        assert_eq!(DeploymentName::from_image(&image).unwrap().as_str(), "busybox");
    }
}
