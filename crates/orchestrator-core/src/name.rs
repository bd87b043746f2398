//! Names of nodes, deployments and stacks: DNS labels (RFC 1123), so they can be used in
//! container names, Docker labels, URLs and host names without escaping. A deployment's name
//! may also hold '_' inside it: a stack's deployments are named `STACK_SERVICE`, as Swarm
//! names a stack's services.

use crate::error::{Error, Result};
use crate::image::ImageRef;

pub const MAX_NAME_LEN: usize = 63;

fn validate_label(field: &'static str, value: &str) -> Result<()> {
    validate(field, value, false)
}

/// A DNS label, or one with '_' inside it too (a deployment's name).
fn validate_deployment(field: &'static str, value: &str) -> Result<()> {
    validate(field, value, true)
}

fn validate(field: &'static str, value: &str, underscore: bool) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(Error::invalid(field, format!("must be 1-{MAX_NAME_LEN} characters, got {}", value.len())));
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (underscore && b == b'_');
    if !value.bytes().all(allowed) {
        let what =
            if underscore { "lowercase letters, digits, '-' and '_'" } else { "lowercase letters, digits and '-'" };
        return Err(Error::invalid(field, format!("{value:?} may contain only {what}")));
    }
    let edge = |c: char| c == '-' || c == '_';
    if value.starts_with(edge) || value.ends_with(edge) {
        return Err(Error::invalid(field, format!("{value:?} must start and end with a letter or digit")));
    }
    Ok(())
}

macro_rules! label_name {
    ($(#[$doc:meta])* $ty:ident, $field:literal) => {
        label_name!($(#[$doc])* $ty, $field, validate_label);
    };
    ($(#[$doc:meta])* $ty:ident, $field:literal, $validate:ident) => {
        $(#[$doc])*
        // Shared text: names are cloned into every replica, map key and event of theirs, and
        // a clone is then a count, not a copy.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(std::sync::Arc<str>);

        impl $ty {
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                $validate($field, &value)?;
                Ok(Self(value.into()))
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
    /// A deployment's unique name, e.g. `web` (or `shop_web`, a stack's).
    DeploymentName,
    "name",
    validate_deployment
);
label_name!(
    /// A stack's name, e.g. `shop`: a DNS label.
    StackName,
    "stack"
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
    fn a_deployment_name_may_hold_an_underscore_inside_a_node_name_not() {
        assert_eq!(DeploymentName::new("shop_web").unwrap().as_str(), "shop_web");
        assert!(NodeName::new("shop_web").is_err() && StackName::new("shop_web").is_err());
        for bad in ["_a", "a_", "A_b", "a.b"] {
            assert!(DeploymentName::new(bad).is_err(), "{bad}");
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
