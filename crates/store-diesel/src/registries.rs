//! `RegistryStore` on diesel. A password is sealed before it is written: XChaCha20-Poly1305
//! under a key the server keeps outside the database (a file beside the admin token, 0600), a
//! random nonce per write, the server and username as associated data, so a sealed password
//! copied onto another row does not open. A copy of the database alone reveals no password;
//! the database and the key together do, as with any server that must use the secret itself.

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use diesel::prelude::*;
use orchestrator_core::error::Kind;
use orchestrator_core::{Error as DomainError, Password, RegistryCredential, RegistryLogin, RegistryStore, Result};

use crate::error::Error;
use crate::rows::to_millis;
use crate::schema::registries;
use crate::store::DieselStore;

const NONCE_LEN: usize = 24;

/// The sealing key; never printed.
pub struct SealKey(XChaCha20Poly1305);

impl SealKey {
    pub fn new(key: [u8; 32]) -> Self {
        SealKey(XChaCha20Poly1305::new(&key.into()))
    }

    fn seal(&self, login: &RegistryLogin, password: &Password) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| DomainError::Store(format!("no randomness from the OS: {e}")))?;
        let aad = associated(login);
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: password.expose().as_bytes(), aad: &aad })
            .map_err(|_| DomainError::Store("cannot seal a registry password".into()))?;
        Ok(hex::encode([nonce.as_slice(), &sealed].concat()))
    }

    fn open(&self, login: &RegistryLogin, sealed: &str) -> Result<Password, Error> {
        let bytes =
            hex::decode(sealed).map_err(|e| Error::Corrupt(format!("sealed password of {}: {e}", login.server)))?;
        if bytes.len() <= NONCE_LEN {
            return Err(Error::Corrupt(format!("sealed password of {} is too short", login.server)));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = associated(login);
        let plain = self.0.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad }).map_err(|_| {
            DomainError::Store(format!(
                "the password kept for registry {} does not open with this server's key (another key file?)",
                login.server
            ))
        })?;
        let text =
            String::from_utf8(plain).map_err(|e| Error::Corrupt(format!("password of {}: {e}", login.server)))?;
        Ok(Password::new(text))
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

/// What a sealed password is bound to.
fn associated(login: &RegistryLogin) -> Vec<u8> {
    format!("{}\0{}", login.server, login.username).into_bytes()
}

fn key_of(store: &DieselStore) -> Result<std::sync::Arc<SealKey>> {
    store.registry_key().ok_or_else(|| {
        DomainError::Conflict("this server has no registry key: registry passwords cannot be kept".into())
    })
}

#[async_trait]
impl RegistryStore for DieselStore {
    async fn put_registry(&self, credential: RegistryCredential) -> Result<()> {
        let key = key_of(self)?;
        let sealed = key.seal(&credential.login, &credential.password)?;
        let login = credential.login;
        let now = to_millis(std::time::SystemTime::now());
        Ok(self
            .write(move |conn| {
                diesel::delete(registries::table.find(&login.server)).execute(conn)?;
                diesel::insert_into(registries::table)
                    .values((
                        registries::server.eq(&login.server),
                        registries::username.eq(&login.username),
                        registries::sealed.eq(&sealed),
                        registries::updated_at_ms.eq(now),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await?)
    }

    async fn list_registries(&self) -> Result<Vec<RegistryLogin>> {
        Ok(self
            .read(|conn| {
                let rows: Vec<(String, String)> = registries::table
                    .order(registries::server)
                    .select((registries::server, registries::username))
                    .load(conn)?;
                Ok(rows.into_iter().map(|(server, username)| RegistryLogin { server, username }).collect())
            })
            .await?)
    }

    async fn registry_credential(&self, server: &str) -> Result<Option<RegistryCredential>> {
        let wanted = server.to_string();
        let row: Option<(String, String)> = self
            .read(move |conn| {
                Ok(registries::table
                    .find(&wanted)
                    .select((registries::username, registries::sealed))
                    .first(conn)
                    .optional()?)
            })
            .await?;
        let Some((username, sealed)) = row else { return Ok(None) };
        let login = RegistryLogin { server: server.to_string(), username };
        let password = key_of(self)?.open(&login, &sealed)?;
        Ok(Some(RegistryCredential { login, password }))
    }

    async fn remove_registry(&self, server: &str) -> Result<()> {
        let server = server.to_string();
        Ok(self
            .write(move |conn| {
                if diesel::delete(registries::table.find(&server)).execute(conn)? == 0 {
                    return Err(DomainError::not_found(Kind::Registry, server).into());
                }
                Ok(())
            })
            .await?)
    }
}
