//! Loopback helpers shared by the xtask commands that start servers: a free port, GETs that
//! report the status instead of failing on it, and waiting for a server to answer.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// A loopback port nothing listens on now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn get(url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut resp = request.call().ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.body_mut().read_to_string().ok()?))
}

/// GET: (status, body), or None without an answer.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    get(url, None)
}

/// GET with a bearer token.
pub fn http_get_auth(url: &str, token: &str) -> Option<(u16, String)> {
    get(url, Some(token))
}

/// Polls `url` every 100 ms until it answers 200 (a server's `/healthz` or `/readyz`).
pub fn wait_for_ok(url: &str, within: Duration) -> Result<()> {
    let started = Instant::now();
    while http_get(url).is_none_or(|(code, _)| code != 200) {
        if started.elapsed() > within {
            bail!("{url} did not answer 200 within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
