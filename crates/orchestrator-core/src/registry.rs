//! Image registries the engines pull from with credentials. A password goes in once and never
//! comes out through the API: stores keep it sealed, and it leaves the process only in the
//! pull request of the engine that needs it.

use async_trait::async_trait;

use crate::error::{Error, Result};

/// A password that never prints: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Password(secret.into())
    }

    /// The secret itself, for the one place that sends it (a pull) or seals it (a store).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A registry and the user the engines log in as: what may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// `host[:port]`, as image references name it.
    pub server: String,
    pub username: String,
}

/// A registry's login with its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    pub login: RegistryLogin,
    pub password: Password,
}

impl RegistryCredential {
    /// Validated: `server` is `host[:port]` (no scheme, no path), a username and a password.
    pub fn new(server: &str, username: &str, password: Password) -> Result<Self> {
        if server.len() > 253 || !crate::image::is_registry_host(server) {
            return Err(Error::invalid("server", format!("{server:?} is not a registry host (host or host:port)")));
        }
        if username.is_empty() || username.chars().count() > 255 || username.contains(['\0', ':']) {
            return Err(Error::invalid("username", "1-255 characters, no ':' or NUL"));
        }
        if password.expose().is_empty() || password.expose().chars().count() > 4096 {
            return Err(Error::invalid("password", "1-4096 characters"));
        }
        Ok(Self { login: RegistryLogin { server: server.to_string(), username: username.to_string() }, password })
    }
}

/// Where registry logins are kept.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Adds the login, or replaces the one kept for its server.
    async fn put_registry(&self, credential: RegistryCredential) -> Result<()>;

    /// Every registry with its username, by server; never a password.
    async fn list_registries(&self) -> Result<Vec<RegistryLogin>>;

    /// The login for `server`, password included (for a pull), if one is kept.
    async fn registry_credential(&self, server: &str) -> Result<Option<RegistryCredential>>;

    /// Forgets the login for `server`; `NotFound` if none is kept.
    async fn remove_registry(&self, server: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_prints_and_bad_logins_name_their_field() {
        let c = RegistryCredential::new("10.123.0.1:5000", "ci", Password::new("s3cret")).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        let field = |e: Error| match e {
            Error::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(RegistryCredential::new("https://r", "ci", Password::new("p")).unwrap_err()), "server");
        assert_eq!(field(RegistryCredential::new("r:5000", "", Password::new("p")).unwrap_err()), "username");
        assert_eq!(field(RegistryCredential::new("r:5000", "ci", Password::new("")).unwrap_err()), "password");
    }
}
