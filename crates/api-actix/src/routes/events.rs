//! `GET /v1/events` (a page of events after an id) and `GET /v1/events/stream` (Server-Sent
//! Events, resumable with `Last-Event-ID`). Both read what the store recorded with its writes,
//! so every server of an HA setup streams the same events with the same ids. Both take the
//! same filters (`deployment`, `node`, `kind`), applied to what the store kept (its last
//! `EVENT_RETENTION` events, so a filtered read scans at most that many).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_core::{ClusterStore, Event, EventKind};
use serde::Deserialize;
use utoipa::IntoParams;

use super::query_number as parse;
use crate::ApiState;
use crate::dto::EventView;
use crate::error::{ApiError, ErrorBody};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1_000;
/// How often a stream looks at the store's revision for news.
const POLL: Duration = Duration::from_millis(200);
/// A stream reads the events even without a revision change this often (lease changes do not
/// move the revision).
const READ_AT_LEAST_EVERY: Duration = Duration::from_secs(2);
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events with a larger id (default 0: from the oldest kept).
    #[param(value_type = Option<i64>, minimum = 0)]
    since: Option<String>,
    /// At most this many, oldest first (1..=1,000, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The newest this many events (1..=1,000), oldest first (and after `since`, if given).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    tail: Option<String>,
    /// Only events about this deployment.
    deployment: Option<String>,
    /// Only events about this node.
    node: Option<String>,
    /// Only events of these kinds, comma-separated: a kind (`replica.exited`) or a family
    /// (`rollout` = every `rollout.*`).
    #[param(schema_with = crate::grammar::event_kinds_schema)]
    kind: Option<String>,
}

/// Which events a reader asked for; empty matches every event.
#[derive(Debug, Clone, Default)]
struct EventFilter {
    deployment: Option<String>,
    node: Option<String>,
    /// Empty: any kind.
    kinds: Vec<EventKind>,
}

impl EventFilter {
    fn from_query(query: &EventsQuery) -> Result<Self, ApiError> {
        let mut kinds = Vec::new();
        for wanted in
            query.kind.iter().flat_map(|k| k.split(',')).map(|k| k.trim_matches(' ')).filter(|k| !k.is_empty())
        {
            let family = format!("{wanted}.");
            let matching: Vec<EventKind> = EventKind::ALL
                .into_iter()
                .filter(|k| k.as_str() == wanted || k.as_str().starts_with(&family))
                .collect();
            if matching.is_empty() {
                return Err(ApiError::BadRequest {
                    code: "invalid_value",
                    message: format!(
                        "invalid kind: {wanted:?} is no event kind nor family (e.g. replica.exited, rollout)"
                    ),
                    field: Some("kind".into()),
                });
            }
            kinds.extend(matching);
        }
        Ok(Self { deployment: query.deployment.clone(), node: query.node.clone(), kinds })
    }

    fn is_everything(&self) -> bool {
        self.deployment.is_none() && self.node.is_none() && self.kinds.is_empty()
    }

    fn matches(&self, event: &Event) -> bool {
        self.deployment.as_ref().is_none_or(|d| event.deployment.as_ref() == Some(d))
            && self.node.as_ref().is_none_or(|n| event.node.as_ref() == Some(n))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
    }
}

/// The matching events after `since`, oldest first: the first `limit`, or with `newest` the
/// last `limit`. Reads the store a page at a time.
async fn matching(
    store: &dyn ClusterStore,
    filter: &EventFilter,
    since: u64,
    limit: u32,
    newest: bool,
) -> Result<Vec<Event>, ApiError> {
    let limit = limit as usize;
    let mut found = VecDeque::new();
    let mut after = since;
    loop {
        let page = store.list_events(after, MAX_LIMIT).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for event in page.into_iter().filter(|e| filter.matches(e)) {
            if found.len() == limit {
                if !newest {
                    return Ok(found.into());
                }
                found.pop_front();
            }
            found.push_back(event);
        }
    }
    Ok(found.into())
}

/// An event id: 0..=2^63-1, as the OpenAPI document's int64 says.
fn event_id(field: &'static str, raw: Option<&str>) -> Result<Option<u64>, ApiError> {
    match parse::<i64>(field, raw)? {
        Some(id) if id < 0 => Err(ApiError::BadRequest {
            code: "invalid_value",
            message: format!("invalid {field}: must not be negative"),
            field: Some(field.into()),
        }),
        id => Ok(id.map(i64::unsigned_abs)),
    }
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "Events after `since`, oldest first", body = [EventView]),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 422, description = "`since` or `limit` out of range (the field is named)", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn list(query: web::Query<EventsQuery>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let in_range = |field: &'static str, n: u32| {
        if (1..=MAX_LIMIT).contains(&n) {
            Ok(n)
        } else {
            Err(ApiError::BadRequest {
                code: "invalid_value",
                message: format!("invalid {field}: must be 1..={MAX_LIMIT}"),
                field: Some(field.into()),
            })
        }
    };
    let since = event_id("since", query.since.as_deref())?.unwrap_or(0);
    let limit = in_range("limit", parse::<u32>("limit", query.limit.as_deref())?.unwrap_or(DEFAULT_LIMIT))?;
    let tail = parse::<u32>("tail", query.tail.as_deref())?.map(|t| in_range("tail", t)).transpose()?;
    let filter = EventFilter::from_query(&query)?;
    if !filter.is_everything() {
        let (limit, newest) = tail.map_or((limit, false), |t| (t, true));
        let events = matching(state.store.as_ref(), &filter, since, limit, newest).await?;
        return Ok(HttpResponse::Ok().json(events.iter().map(EventView::from).collect::<Vec<_>>()));
    }
    let (since, limit) = match tail {
        // The newest `tail` (after `since`, when both are given).
        Some(tail) => (since.max(state.store.last_event_id().await?.saturating_sub(u64::from(tail))), tail),
        None => (since, limit),
    };
    let events = state.store.list_events(since, limit).await?;
    Ok(HttpResponse::Ok().json(events.iter().map(EventView::from).collect::<Vec<_>>()))
}

#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this id (wins over `since`)")),
    responses((status = 200, description = "`text/event-stream`: one message per event (`id`, `event` = kind, `data` = the event as JSON); without `since`, `tail` or `Last-Event-ID`, only events from now on", content_type = "text/event-stream", body = String),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 422, description = "`since` or `Last-Event-ID` not an id (the field is named)", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn stream(
    req: HttpRequest,
    query: web::Query<EventsQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let header = req.headers().get("Last-Event-ID").map(|v| v.to_str().unwrap_or("?"));
    let resume = event_id("Last-Event-ID", header)?;
    let since = event_id("since", query.since.as_deref())?;
    let tail = parse::<u64>("tail", query.tail.as_deref())?;
    let filter = EventFilter::from_query(&query)?;
    let after = match resume.or(since) {
        Some(id) => id,
        None if filter.is_everything() || tail.is_none() => {
            state.store.last_event_id().await?.saturating_sub(tail.unwrap_or(0))
        }
        // The newest `tail` matching: resume just before the first of them.
        None => {
            let tail = u32::try_from(tail.unwrap_or(0)).unwrap_or(u32::MAX).clamp(1, MAX_LIMIT);
            match matching(state.store.as_ref(), &filter, 0, tail, true).await?.first() {
                Some(first) => first.id - 1,
                None => state.store.last_event_id().await?,
            }
        }
    };
    let feed = Feed::new(Arc::clone(&state.store), after, filter);
    // The first bytes go out at once (headers flushed, the client knows it is connected) and
    // tell an EventSource to reconnect after a second.
    let hello = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"retry: 1000\n\n")) });
    let events = futures::stream::unfold(feed, |mut feed| async move { Some((Ok(feed.next().await), feed)) });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // nginx and the like would otherwise hold the messages back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures::StreamExt::chain(hello, events)))
}

/// One client's position in the events: what it has been sent, and what is ready to send.
struct Feed {
    store: Arc<dyn ClusterStore>,
    /// The last event read (matching or not).
    after: u64,
    filter: EventFilter,
    ready: VecDeque<Event>,
    revision: Option<u64>,
    read_at: Instant,
    sent_at: Instant,
}

impl Feed {
    fn new(store: Arc<dyn ClusterStore>, after: u64, filter: EventFilter) -> Self {
        let now = Instant::now();
        Self { store, after, filter, ready: VecDeque::new(), revision: None, read_at: now, sent_at: now }
    }

    /// The next message: an event, or a keep-alive comment after a quiet while.
    async fn next(&mut self) -> Bytes {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.sent_at = Instant::now();
                return message(&event);
            }
            if self.sent_at.elapsed() >= KEEP_ALIVE {
                self.sent_at = Instant::now();
                return Bytes::from_static(b": keep-alive\n\n");
            }
            let revision = self.store.revision().await.ok();
            if revision != self.revision || self.read_at.elapsed() >= READ_AT_LEAST_EVERY {
                self.revision = revision;
                self.read_at = Instant::now();
                match self.store.list_events(self.after, MAX_LIMIT).await {
                    Ok(events) if !events.is_empty() => {
                        self.after = events.last().map_or(self.after, |e| e.id);
                        let filter = &self.filter;
                        self.ready.extend(events.into_iter().filter(|e| filter.matches(e)));
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "event stream: reading events failed; retrying"),
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn message(event: &Event) -> Bytes {
    let data = serde_json::to_string(&EventView::from(event)).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {}\nevent: {}\ndata: {data}\n\n", event.id, event.kind))
}
