//! How many calls each engine gets at once, adapted to what it sustains.
//!
//! A fixed number in flight per engine is wrong both ways: an engine on a busy, small host
//! answers every call later when given more at once (the starts queue inside dockerd: each
//! one's latency grows with the queue while the throughput stays flat), and an engine on a
//! big idle host could take many more than a constant allows. So each engine's limit moves
//! like a TCP window on delay (as in TCP Vegas), once a round (`limit` starts): a round whose
//! mean start took more than `TOLERANCE` times the engine's unqueued start time takes a
//! quarter of the limit off; a faster one, most of whose starts found the limit all in use,
//! adds one call.
//!
//! The unqueued speed is the fastest start made alone on the engine lately. A busy engine may
//! never see one by itself (its starts come in batches), so, as BBR probes its round-trip time,
//! a start waits for the engine's other calls to finish and runs alone when the last two
//! windows of starts had none alone: a drain of a round or so once in `2 * WINDOW` starts.
//!
//! Only starts are measured: a removal waits out its stop grace period and a pull takes what
//! the image takes, and neither says how loaded the engine is. They still hold a permit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::NodeName;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::debug;

/// A start up to this many times the unqueued speed means the engine is not queueing.
const TOLERANCE: u32 = 2;
/// Starts per window; the unqueued speed is the fastest alone start of this window and the
/// last, so it follows an engine that became slower for good.
const WINDOW: usize = 64;

/// The bounds of every engine's limit: where it begins, how low and how high it may go (at
/// least 1). What a converge runs across engines at once is bounded where it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitBounds {
    pub initial: usize,
    pub min: usize,
    pub max: usize,
}

pub struct EngineLimits {
    bounds: LimitBounds,
    engines: Mutex<HashMap<NodeName, Arc<Engine>>>,
}

struct Engine {
    node: NodeName,
    semaphore: Arc<Semaphore>,
    window: Mutex<Window>,
}

/// Held for one call to an engine; a start reports itself with [`EnginePermit::started`].
pub struct EnginePermit {
    /// The engine's permits this call holds: one, or all of them for a start made alone.
    permit: Option<OwnedSemaphorePermit>,
    engine: Arc<Engine>,
    acquired: Instant,
    /// How many times the limit had been all in use when this call began: if it was again
    /// before the call ended, the engine was given all it may take meanwhile, and only then
    /// does a fast answer show it could take more.
    fills_before: u64,
    alone: bool,
}

impl EngineLimits {
    pub fn new(bounds: LimitBounds) -> Self {
        let max = bounds.max.max(1);
        let min = bounds.min.clamp(1, max);
        let bounds = LimitBounds { initial: bounds.initial.clamp(min, max), min, max };
        Self { bounds, engines: Mutex::default() }
    }

    /// A permit for a call that is not a start (a removal, a pull).
    pub async fn acquire(&self, node: &NodeName) -> EnginePermit {
        self.acquire_for(node, false).await
    }

    /// A permit for a container start, to be reported with [`EnginePermit::started`].
    pub async fn acquire_start(&self, node: &NodeName) -> EnginePermit {
        self.acquire_for(node, true).await
    }

    async fn acquire_for(&self, node: &NodeName, start: bool) -> EnginePermit {
        let engine = self.engine(node);
        let (alone, held) = {
            let mut window = engine.lock();
            let alone = start && window.take_probe();
            (alone, if alone { window.limit } else { 1 })
        };
        let wanted = u32::try_from(held).expect("limits are small");
        let acquiring = Arc::clone(&engine.semaphore).acquire_many_owned(wanted);
        // A probe given up before it got its permits (its caller cancelled) is due again.
        let mut probe_guard = ProbeGuard { engine: &engine, armed: alone };
        let permit = acquiring.await.expect("engine semaphores are never closed");
        probe_guard.armed = false;
        drop(probe_guard);
        let fills_before = engine.lock().begin_call();
        EnginePermit { permit: Some(permit), engine, acquired: Instant::now(), fills_before, alone }
    }

    fn engine(&self, node: &NodeName) -> Arc<Engine> {
        let mut engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(engines.entry(node.clone()).or_insert_with(|| {
            Arc::new(Engine {
                node: node.clone(),
                semaphore: Arc::new(Semaphore::new(self.bounds.initial)),
                window: Mutex::new(Window::new(self.bounds)),
            })
        }))
    }

    /// Each engine's current limit, for the stats and tests.
    pub fn limits(&self) -> HashMap<NodeName, usize> {
        let engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        engines.iter().map(|(name, engine)| (name.clone(), engine.lock().limit)).collect()
    }
}

/// Puts a probe back as due if its wait for the engine's permits is dropped.
struct ProbeGuard<'a> {
    engine: &'a Engine,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.engine.lock().probing = false;
        }
    }
}

impl Engine {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EnginePermit {
    /// The call was a container start and it succeeded: its latency moves the engine's limit.
    pub fn started(self) {
        let latency = self.acquired.elapsed();
        let mut window = self.engine.lock();
        let before = window.limit;
        let saturated = window.fills > self.fills_before;
        match window.sample(latency, saturated, self.alone) {
            Step::Keep => {}
            Step::Raise => self.engine.semaphore.add_permits(1),
            Step::Lower(by) => {
                // Permits out in calls are retired as they come back (see `drop`).
                let forgotten = self.engine.semaphore.forget_permits(by);
                window.owed += by - forgotten;
            }
        }
        if window.limit != before {
            debug!(node = %self.engine.node, limit = window.limit, latency_ms = latency.as_millis(), "engine limit moved");
        }
    }
}

impl Drop for EnginePermit {
    fn drop(&mut self) {
        let mut window = self.engine.lock();
        window.in_flight -= 1;
        if self.alone {
            window.probing = false;
        }
        let permit = self.permit.take().expect("a permit is taken only here");
        let held = permit.num_permits();
        let retired = window.owed.min(held);
        if retired > 0 {
            window.owed -= retired;
            permit.forget();
            self.engine.semaphore.add_permits(held - retired);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Keep,
    Raise,
    Lower(usize),
}

/// One engine's limit and what moves it. No clock and no semaphore: the decisions alone.
#[derive(Debug)]
struct Window {
    bounds: LimitBounds,
    limit: usize,
    in_flight: usize,
    /// Permits to retire as they come back: the limit went down while they were out.
    owed: usize,
    /// Times a call made the calls in flight reach the limit.
    fills: u64,
    /// The fastest start made alone in this window and in the last.
    alone_now: Option<Duration>,
    alone_before: Option<Duration>,
    samples: usize,
    /// A start is waiting to run alone, or running alone. The limit does not move meanwhile,
    /// but by that start's own sample: it waits for `limit` permits, and fewer could exist.
    probing: bool,
    round: Round,
}

impl Window {
    fn new(bounds: LimitBounds) -> Self {
        Self {
            bounds,
            limit: bounds.initial,
            in_flight: 0,
            owed: 0,
            fills: 0,
            alone_now: None,
            alone_before: None,
            samples: 0,
            probing: false,
            round: Round::default(),
        }
    }

    /// A call begins; the fills counted before it.
    fn begin_call(&mut self) -> u64 {
        let before = self.fills;
        self.in_flight += 1;
        if self.in_flight >= self.limit {
            self.fills += 1;
        }
        before
    }

    /// Whether the next start should run alone (the engine's unqueued speed is unknown or
    /// stale, and no other start is already on it); if so, it is now on it.
    fn take_probe(&mut self) -> bool {
        let due = self.unqueued().is_none() && !self.probing;
        self.probing |= due;
        due
    }

    fn unqueued(&self) -> Option<Duration> {
        self.alone_now.into_iter().chain(self.alone_before).min()
    }

    /// Takes one start's latency; at the end of a round (`limit` starts) decides on the
    /// round's mean, which a single slow start on a noisy engine does not swing.
    fn sample(&mut self, latency: Duration, saturated: bool, alone: bool) -> Step {
        if self.samples == WINDOW {
            self.alone_before = self.alone_now.take();
            self.samples = 0;
        }
        self.samples += 1;
        if alone {
            self.alone_now = Some(self.alone_now.map_or(latency, |f| f.min(latency)));
        }
        // While a start waits to run alone, the limit stays: it waits for that many permits.
        if self.probing && !alone {
            return Step::Keep;
        }
        let Some(unqueued) = self.unqueued() else { return Step::Keep };
        self.round.starts += 1;
        self.round.latency += latency;
        self.round.saturated += usize::from(saturated);
        if self.round.starts < self.limit {
            return Step::Keep;
        }
        let round = std::mem::take(&mut self.round);
        let mean = round.latency / u32::try_from(round.starts).expect("rounds are small");
        if mean > unqueued * TOLERANCE {
            let by = (self.limit / 4).max(1).min(self.limit - self.bounds.min);
            if by == 0 {
                return Step::Keep;
            }
            self.limit -= by;
            return Step::Lower(by);
        }
        // Most of the round's starts had the limit all in use: it was what held them back.
        if 2 * round.saturated >= round.starts && self.limit < self.bounds.max {
            self.limit += 1;
            return Step::Raise;
        }
        Step::Keep
    }
}

/// The starts of the round under way.
#[derive(Debug, Default)]
struct Round {
    starts: usize,
    latency: Duration,
    saturated: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: LimitBounds = LimitBounds { initial: 4, min: 1, max: 16 };
    const FAST: Duration = Duration::from_millis(100);

    /// An engine that shares itself among the starts in flight (processor sharing) and runs
    /// `capacity` of them at full speed: a start takes `FAST` up to that many at once, and
    /// proportionally longer beyond.
    fn latency_at(in_flight: usize, capacity: usize) -> Duration {
        FAST.mul_f64((in_flight as f64 / capacity as f64).max(1.0))
    }

    /// Drives a window as converges would: every start made with the limit all in use,
    /// but for those it asks to make alone.
    fn settle(window: &mut Window, capacity: usize, starts: usize) -> Vec<usize> {
        (0..starts)
            .map(|_| {
                let alone = window.take_probe();
                let in_flight = if alone { 1 } else { window.limit };
                window.sample(latency_at(in_flight, capacity), !alone, alone);
                window.probing = false;
                window.limit
            })
            .collect()
    }

    #[test]
    fn an_engine_that_keeps_up_gets_more_calls_up_to_the_bound() {
        let mut window = Window::new(BOUNDS);
        let limits = settle(&mut window, 64, 400);
        assert!(limits.windows(2).all(|w| w[1] >= w[0]), "only up: {limits:?}");
        assert_eq!(window.limit, BOUNDS.max);
    }

    #[test]
    fn an_engine_that_queues_is_given_about_what_it_runs_at_once() {
        for capacity in [1, 2, 3, 6] {
            let mut window = Window::new(BOUNDS);
            let limits = settle(&mut window, capacity, 2_000);
            let settled = &limits[1_000..];
            // Never queueing more than the tolerance allows for long, and never starved.
            assert!(settled.iter().all(|&l| l <= 2 * capacity + 1), "capacity {capacity}: {settled:?}");
            assert!(settled.iter().all(|&l| l >= capacity), "capacity {capacity}: {settled:?}");
        }
    }

    #[test]
    fn a_limit_not_in_use_does_not_grow() {
        let mut window = Window::new(BOUNDS);
        window.sample(FAST, false, true);
        for _ in 0..500 {
            assert_eq!(window.sample(FAST, false, false), Step::Keep);
        }
        assert_eq!(window.limit, BOUNDS.initial);
    }

    #[test]
    fn one_cut_a_round_and_never_below_one() {
        let mut window = Window::new(LimitBounds { initial: 8, ..BOUNDS });
        window.sample(FAST, false, true);
        // A burst of slow starts right after: one cut, then the round must pass first.
        let steps: Vec<Step> = (0..7).map(|_| window.sample(FAST * 10, true, false)).collect();
        assert_eq!(steps.iter().filter(|s| matches!(s, Step::Lower(_))).count(), 1, "{steps:?}");
        // Within a window of the fast start (later, slow is the engine's new normal).
        for _ in 0..50 {
            window.sample(FAST * 10, true, false);
        }
        assert_eq!(window.limit, 1);
    }

    #[test]
    fn nothing_moves_until_a_start_made_alone_tells_the_unqueued_speed() {
        let mut window = Window::new(BOUNDS);
        assert!(window.take_probe(), "the first start runs alone");
        assert!(!window.take_probe(), "one at a time");
        assert_eq!(window.sample(FAST * 10, true, false), Step::Keep);
        assert_eq!(window.sample(FAST, false, true), Step::Keep);
        window.probing = false;
        // Known for this window and the next; then due again.
        for _ in 0..2 * WINDOW - 1 {
            assert!(!window.take_probe());
            window.sample(FAST, false, false);
        }
        window.sample(FAST, false, false);
        assert!(window.take_probe(), "two windows without a start alone");
    }

    #[tokio::test]
    async fn a_start_made_alone_waits_for_the_engines_other_calls_and_holds_them_off() {
        let limits = EngineLimits::new(BOUNDS);
        let node = NodeName::new("n1").unwrap();
        let removal = limits.acquire(&node).await;
        let probe = limits.acquire_start(&node);
        tokio::pin!(probe);
        assert!(futures::poll!(probe.as_mut()).is_pending(), "waits for the removal");
        drop(removal);
        let probe = probe.await;
        assert!(probe.alone);
        assert_eq!(probe.permit.as_ref().unwrap().num_permits(), BOUNDS.initial);
        let other = limits.acquire_start(&node);
        tokio::pin!(other);
        assert!(futures::poll!(other.as_mut()).is_pending(), "nothing else runs beside it");
        probe.started();
        let other = other.await;
        assert!(!other.alone, "the unqueued speed is known now");
        assert_eq!(limits.engine(&node).semaphore.available_permits(), BOUNDS.initial - 1);
    }

    #[test]
    fn the_limit_stays_while_a_start_waits_to_run_alone_but_for_its_own_answer() {
        let mut window = Window::new(LimitBounds { initial: 2, ..BOUNDS });
        window.sample(FAST, false, true);
        window.probing = true;
        assert_eq!(window.sample(FAST * 10, true, false), Step::Keep, "it waits for 2 permits");
        assert_eq!(window.sample(FAST * 10, false, true), Step::Lower(1));
    }

    #[test]
    fn never_below_the_floor() {
        let mut window = Window::new(LimitBounds { initial: 6, min: 4, ..BOUNDS });
        settle(&mut window, 1, 500);
        assert_eq!(window.limit, 4);
    }

    #[test]
    fn one_slow_start_in_a_round_of_fast_ones_moves_nothing_down() {
        let mut window = Window::new(LimitBounds { initial: 8, ..BOUNDS });
        window.sample(FAST, false, true);
        let steps: Vec<Step> =
            (0..7).map(|i| window.sample(if i == 3 { FAST * 5 } else { FAST }, true, false)).collect();
        assert_eq!(steps.last(), Some(&Step::Raise), "{steps:?}");
    }

    #[tokio::test]
    async fn the_semaphore_follows_the_limit_with_calls_out() {
        let limits = EngineLimits::new(LimitBounds { initial: 4, min: 1, max: 8 });
        let node = NodeName::new("n1").unwrap();
        let engine = || Arc::clone(&limits.engines.lock().unwrap()[&node]);
        let held: Vec<EnginePermit> = futures::future::join_all((0..4).map(|_| limits.acquire(&node))).await;
        assert_eq!(engine().lock().fills, 1, "the fourth call filled the limit");
        assert!(held.iter().all(|p| p.fills_before == 0));
        assert_eq!(engine().semaphore.available_permits(), 0);
        // Lowered by one while all four are out: the first permit back is retired.
        {
            let engine = engine();
            let mut window = engine.lock();
            window.limit = 3;
            window.owed = 1;
        }
        drop(held);
        assert_eq!(engine().semaphore.available_permits(), 3);
        assert_eq!(engine().lock().owed, 0);
        assert_eq!(engine().lock().in_flight, 0);
        assert_eq!(limits.limits()[&node], 3);
    }
}
