//! The key that seals registry passwords in the store: 32 random bytes in hex, in a file the
//! owner alone can read, outside the database (so a copy of the database alone reveals no
//! password). Made once in the data dir, or given with `--registry-key-file` (every server of
//! one PostgreSQL store needs the same file).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<[u8; 32]> {
    let saved = data_dir.join("registry.key");
    let path = file.unwrap_or(&saved);
    if file.is_none() && !saved.exists() {
        let key = crate::tokens::random_bytes::<32>()?;
        crate::tokens::save_private(&saved, &hex::encode(key))
            .with_context(|| format!("cannot save the registry key to {}", saved.display()))?;
        return Ok(key);
    }
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read the registry key {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!("the registry key {} is readable by others (mode {:o}): chmod 600 it", path.display(), mode & 0o777);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the registry key {}", path.display()))?;
    let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
    let Some(bytes) = bytes else { bail!("the registry key {} is not 64 hex digits", path.display()) };
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_then_read_back_and_a_shared_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let made = load(None, dir.path()).unwrap();
        let file = dir.path().join("registry.key");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load(None, dir.path()).unwrap(), made, "the same key at the next start");
        assert_eq!(load(Some(&file), dir.path()).unwrap(), made);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load(Some(&file), dir.path()).unwrap_err().to_string().contains("chmod 600"));
    }
}
