//! The CLI's one HTTP client: made once per process, so a `--wait` that polls for minutes
//! reuses its connection instead of opening one a poll. Every connection attempt is bounded;
//! a request-and-answer call is bounded as a whole, a stream (followed logs or events, which
//! may stay quiet for hours) only by its connection.

use std::sync::OnceLock;
use std::time::Duration;

/// Reaching the server takes no longer than this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A call that is not a stream gets its whole answer within this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("orchestrator-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    })
}
