//! Where the admin token comes from: the flag or variable, a file, or (first start only)
//! generated, saved with mode 0600 in the data dir, and printed once. A token given to the
//! server must be strong, and a file holding one readable by its owner (and group) only: the
//! server refuses to start otherwise, rather than run with a guessable or exposed secret.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// At least this long: 32 characters of hex are 128 bits.
pub const MIN_TOKEN_LEN: usize = 32;
/// And not made of a handful of characters repeated ("aaaa...", "abababab...").
const MIN_DISTINCT_CHARS: usize = 8;

/// Refuses a weak token; `what` names it in the message (never the token itself).
pub fn check_strength(what: &str, token: &str) -> Result<()> {
    if token.chars().count() < MIN_TOKEN_LEN {
        bail!("{what} is too short: at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)");
    }
    let mut distinct: Vec<char> = token.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT_CHARS {
        bail!("{what} is too weak: at least {MIN_DISTINCT_CHARS} different characters (e.g. `openssl rand -hex 32`)");
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("{what} contains whitespace or control characters");
    }
    Ok(())
}

/// Reads a token file, refusing one that others on the machine can read.
fn read_private(file: &Path) -> Result<String> {
    let mode = std::fs::metadata(file)
        .with_context(|| format!("cannot read token file {}", file.display()))?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        bail!("token file {} is world-readable (mode {:o}): chmod 600 it", file.display(), mode & 0o777);
    }
    let token = std::fs::read_to_string(file).with_context(|| format!("cannot read token file {}", file.display()))?;
    Ok(token.trim().to_string())
}

/// `N` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(bytes)
}

/// Writes a new file (never over one) that its owner alone can read, with `text` on a line.
pub fn save_private(path: &Path, text: &str) -> Result<()> {
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(out, "{text}")?;
    Ok(())
}

pub fn admin_token(given: Option<String>, file: Option<&Path>, data_dir: &Path) -> Result<String> {
    if let Some(token) = given {
        check_strength("the admin token", &token)?;
        return Ok(token);
    }
    if let Some(file) = file {
        let token = read_private(file)?;
        check_strength(&format!("the admin token in {}", file.display()), &token)?;
        return Ok(token);
    }
    let saved = data_dir.join("admin.token");
    if saved.exists() {
        return read_private(&saved);
    }
    let token = hex::encode(random_bytes::<32>()?);
    save_private(&saved, &token).with_context(|| format!("cannot save the admin token to {}", saved.display()))?;
    // Printed to the terminal once, never logged.
    eprintln!("Generated an admin token (saved in {}; shown only now):\n  {token}", saved.display());
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tokens_are_refused_without_echoing_them() {
        for weak in ["s3cr3t", "a".repeat(64).as_str(), "ab".repeat(20).as_str(), "0123456789abcdef 0123456789abcdef"] {
            let err = check_strength("the admin token", weak).unwrap_err().to_string();
            assert!(!err.contains(weak), "{err}");
        }
        check_strength("the admin token", "3f9c0a17b2e84d6a9c51e07fd2b6a8c4").unwrap();
    }

    #[test]
    fn a_world_readable_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "3f9c0a17b2e84d6a9c51e07fd2b6a8c4\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = admin_token(None, Some(&file), dir.path()).unwrap_err().to_string();
        assert!(err.contains("world-readable"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(admin_token(None, Some(&file), dir.path()).unwrap(), "3f9c0a17b2e84d6a9c51e07fd2b6a8c4");
    }
}
