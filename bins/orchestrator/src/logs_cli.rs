//! `orchestrator logs NAME`: the deployment's merged output, a line per line the replicas
//! printed (`replica@node | line`, a colour per replica on a terminal, plain when piped), or
//! with `-o json` the server's NDJSON as it is. Markers (a node that stops or starts
//! answering) go to stderr.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

use crate::client::{ClientArgs, Output};

#[derive(Args)]
pub struct LogsArgs {
    /// The deployment.
    pub name: String,
    /// Keep printing new lines (and replicas that start meanwhile) until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Only each replica's last N lines.
    #[arg(long)]
    pub tail: Option<u32>,
    /// Only lines from this long ago on (`10m`, `1h`) or from this Unix time in seconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Only this replica.
    #[arg(long)]
    pub replica: Option<u64>,
    /// Start each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// The kept last output of replicas that ended badly instead (the one `--replica` names,
    /// as `deploy ps` lists it, or the newest ones): why a crashed replica crashed.
    #[arg(short, long, conflicts_with = "follow")]
    pub previous: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// One NDJSON object of the stream: a line, or a marker.
#[derive(Deserialize)]
struct Item {
    replica: Option<u64>,
    node: String,
    time: Option<String>,
    line: Option<String>,
    marker: Option<String>,
    error: Option<String>,
}

/// ANSI colours given to replicas in turn.
const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

pub async fn logs(args: &LogsArgs) -> Result<()> {
    let c = &args.client;
    let mut query: Vec<(&str, String)> = vec![("follow", args.follow.to_string())];
    if let Some(tail) = args.tail {
        query.push(("tail", tail.to_string()));
    }
    if let Some(since) = &args.since {
        query.push(("since", since.clone()));
    }
    if let Some(replica) = args.replica {
        query.push(("replica", replica.to_string()));
    }
    if args.previous {
        query.push(("previous", "true".into()));
    }
    let url = format!(
        "{}/v1/deployments/{}/logs?{}",
        c.server.trim_end_matches('/'),
        args.name,
        serde_urlencoded::to_string(&query)?
    );
    let mut request = crate::http::client().get(&url);
    if let Some(token) = &c.token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.with_context(|| format!("cannot reach {}", c.server))?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        bail!("{} ({status})", body["error"]["message"].as_str().unwrap_or("no details"));
    }
    let colour = std::io::stdout().is_terminal() && c.output == Output::Table;
    let mut colours: HashMap<u64, &str> = HashMap::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut out = std::io::stdout().lock();
    // Bytes are joined until a line is whole: a chunk may end inside a line or a character.
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=end).collect();
            if c.output == Output::Json {
                out.write_all(&raw)?;
                continue;
            }
            let item: Item = serde_json::from_slice(&raw).context("a malformed log line from the server")?;
            if let Some(marker) = item.marker {
                let why = item.error.map(|e| format!(": {e}")).unwrap_or_default();
                eprintln!("{} | -- {marker}{why} --", item.node);
                continue;
            }
            let replica = item.replica.unwrap_or(0);
            let stamp = if args.timestamps { format!("{} ", item.time.unwrap_or_default()) } else { String::new() };
            let who = format!("{replica}@{}", item.node);
            let line = item.line.unwrap_or_default();
            if colour {
                let next = COLOURS[colours.len() % COLOURS.len()];
                let code = *colours.entry(replica).or_insert(next);
                writeln!(out, "{stamp}\x1b[{code}m{who}\x1b[0m | {line}")?;
            } else {
                writeln!(out, "{stamp}{who} | {line}")?;
            }
        }
        out.flush()?;
    }
    Ok(())
}
