//! Where the admin token comes from: the flag or variable, a file, or (first start only)
//! generated, saved with mode 0600 in the data dir, and printed once.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use rand::RngCore;

pub fn admin_token(given: Option<String>, file: Option<&Path>, data_dir: &Path) -> Result<String> {
    if let Some(token) = given {
        return Ok(token);
    }
    if let Some(file) = file {
        let token =
            std::fs::read_to_string(file).with_context(|| format!("cannot read token file {}", file.display()))?;
        return Ok(token.trim().to_string());
    }
    let saved = data_dir.join("admin.token");
    if let Ok(token) = std::fs::read_to_string(&saved) {
        return Ok(token.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&saved)
        .with_context(|| format!("cannot save the admin token to {}", saved.display()))?;
    writeln!(out, "{token}")?;
    // Printed to the terminal once, never logged.
    eprintln!("Generated an admin token (saved in {}; shown only now):\n  {token}", saved.display());
    Ok(token)
}
