//! `events --follow`: the server's event stream (SSE) read through `eventsource-stream`, so a
//! character split across network chunks, CRLF line ends and `id:` lines are read as the
//! format says. A dropped stream (a restart, a failover behind a load balancer) is resumed
//! after the last event shown, after a jittered exponential wait that starts over once a
//! connection is made; an answer that retrying cannot change (401, 403, 404: a 4xx) ends the
//! command with the server's message.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use backon::{BackoffBuilder, ExponentialBuilder};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::client::ClientArgs;

/// The first wait before reconnecting, and the longest.
const FIRST_WAIT: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// Why one connection ended.
enum Ended {
    /// Try again: the server went away, or the stream broke.
    Dropped(anyhow::Error),
    /// Give up: the server refused the request itself.
    Refused(anyhow::Error),
}

/// Each event of an SSE byte stream, with where it leaves the stream: the last event id (an
/// `id:` line, which SSE carries over to the events after it) or the event's own `id`,
/// whichever is further; comments and `retry:` give none.
pub fn events<S, B, E>(bytes: S) -> impl Stream<Item = Result<(u64, Value)>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::error::Error + Send + Sync + 'static,
{
    bytes.eventsource().filter_map(|event| async move {
        let event = match event {
            Ok(event) if event.data.is_empty() => return None,
            Ok(event) => event,
            Err(e) => return Some(Err(anyhow!("the event stream broke: {e}"))),
        };
        let parsed = serde_json::from_str::<Value>(&event.data).context("a malformed event");
        Some(parsed.map(|value| {
            let id = event.id.parse::<u64>().unwrap_or(0).max(value["id"].as_u64().unwrap_or(0));
            (id, value)
        }))
    })
}

/// Follows the stream from after event `last` until interrupted, calling `show` for each.
pub async fn follow(c: &ClientArgs, mut last: u64, filters: &str, mut show: impl FnMut(&Value)) -> Result<()> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_WAIT)
        .with_max_delay(LONGEST_WAIT)
        .with_jitter()
        .without_max_times();
    let mut waits = backoff.build();
    loop {
        let connected = |waits: &mut _| *waits = backoff.build();
        match connection(c, &mut last, filters, &mut show, || connected(&mut waits)).await {
            Ended::Refused(e) => return Err(e),
            Ended::Dropped(e) => {
                let wait = waits.next().unwrap_or(LONGEST_WAIT);
                eprintln!("event stream: {e:#}; reconnecting in {:.1} s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One connection: shows its events and advances `last` until it ends.
async fn connection(
    c: &ClientArgs,
    last: &mut u64,
    filters: &str,
    show: &mut impl FnMut(&Value),
    connected: impl FnOnce(),
) -> Ended {
    let url = format!("{}/v1/events/stream?since={last}{filters}", c.server.trim_end_matches('/'));
    let mut request = crate::http::client().get(&url).header("Last-Event-ID", last.to_string());
    if let Some(token) = &c.token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Ended::Dropped(anyhow!("cannot reach {}: {e}", c.server)),
    };
    let status = response.status();
    if !status.is_success() {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let e = anyhow!("{} ({status})", body["error"]["message"].as_str().unwrap_or("no details"));
        return if status.is_client_error() { Ended::Refused(e) } else { Ended::Dropped(e) };
    }
    connected();
    let mut stream = std::pin::pin!(events(response.bytes_stream()));
    while let Some(event) = stream.next().await {
        match event {
            Ok((id, value)) => {
                show(&value);
                *last = id.max(*last);
            }
            Err(e) => return Ended::Dropped(e),
        }
    }
    Ended::Dropped(anyhow!("the server ended the stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(chunks: Vec<&'static [u8]>) -> Vec<(u64, Value)> {
        let bytes = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        events(bytes).map(|e| e.unwrap()).collect().await
    }

    type Requests = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

    /// A server on loopback answering each connection with the next of `answers` (raw HTTP),
    /// then closing it; keeps each request's head.
    fn answering(answers: Vec<String>) -> (String, Requests) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Requests::default();
        let seen = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            for (stream, answer) in listener.incoming().zip(answers) {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 4096];
                let n = stream.read(&mut request).unwrap_or(0);
                seen.lock().unwrap().push(String::from_utf8_lossy(&request[..n]).to_lowercase());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (url, requests)
    }

    fn args(server: String) -> ClientArgs {
        ClientArgs { server, token: Some("t".into()), output: crate::client::Output::Json }
    }

    fn sse(body: &str) -> String {
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}")
    }

    #[tokio::test]
    async fn a_dropped_stream_is_resumed_after_the_last_event_and_a_4xx_ends_the_follow() {
        let body = r#"{"error":{"message":"this needs a token"}}"#;
        let refused = format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (url, requests) =
            answering(vec![sse("id: 4\ndata: {\"id\":4}\n\n"), sse("id: 5\ndata: {\"id\":5}\n\n"), refused]);
        let mut shown = Vec::new();
        let started = std::time::Instant::now();
        let ended = follow(&args(url), 3, "", |e| shown.push(e["id"].as_u64().unwrap())).await;
        let e = ended.expect_err("a 4xx ends it");
        assert!(e.to_string().contains("this needs a token (403 Forbidden)"), "{e}");
        assert_eq!(shown, [4, 5], "each event once, in order, across the reconnect");
        let requests = requests.lock().unwrap();
        let resumed: Vec<bool> = [3, 4, 5]
            .iter()
            .zip(requests.iter())
            .map(|(after, r)| {
                r.contains(&format!("since={after} ")) && r.contains(&format!("last-event-id: {after}\r\n"))
            })
            .collect();
        assert_eq!(resumed, [true; 3], "each connection resumes after the last event shown: {requests:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "waits start short: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_character_split_across_chunks_crlf_and_ids_are_read_as_sse_says() {
        let message = "retry: 1000\r\n\r\n: keep-alive\r\n\r\nid: 7\r\nevent: node.offline\r\ndata: {\"id\":7,\"message\":\"n\u{153}ud 2 \u{20ac}\"}\r\n\r\n";
        let bytes = message.as_bytes();
        // Cut inside the three bytes of the euro sign.
        let cut = message.find('\u{20ac}').unwrap() + 1;
        let (a, b) = bytes.split_at(cut);
        let a: &'static [u8] = Box::leak(a.to_vec().into_boxed_slice());
        let b: &'static [u8] = Box::leak(b.to_vec().into_boxed_slice());
        let got = parse(vec![a, b]).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, 7);
        assert_eq!(got[0].1["message"], "n\u{153}ud 2 \u{20ac}");
    }

    #[tokio::test]
    async fn an_id_line_carries_over_and_the_event_s_own_id_moves_past_it() {
        let got = parse(vec![b"id: 12\ndata: {\"id\":3}\n\n", b"data: {\"id\":13}\n\n"]).await;
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [12, 13]);
    }
}
