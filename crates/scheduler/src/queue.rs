//! A work queue keyed by name, in the shape of kube-runtime's scheduler and runner. Whatever
//! asks for a deployment to be converged (an operator's create or scale, a drain, a node's
//! loss, a reconcile pass) enqueues its name; the queue runs the work:
//! - requests for one key merge: a key asked for several times while queued runs once;
//! - at most one run of a key is in flight; a key asked for while it runs runs again after;
//! - at most `concurrency` runs of different keys at once;
//! - a run that asks to be retried runs again after a backoff that doubles up to a cap,
//!   instead of hot; a new request cuts the wait short (an operator acting should not wait
//!   out a retry timer);
//! - everything stops with the queue's token: no run outlives the term that started it.
//!
//! A request may carry a payload for the next run (the reconciler's findings); requests merge
//! theirs: the newer wins, and one without a payload keeps the pending one.
//!
//! Each key with work has one task, started on its first request and ended when it has
//! nothing left to do; the queue holds no task and no worker of its own, so it needs no
//! runner to be started and owns nothing that refers back to its user.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

/// How long a key waits before a retry: `first`, doubling with each retry in a row, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub fn after(&self, retries: u32) -> Duration {
        let factor = 2u32.saturating_pow(retries.saturating_sub(1).min(31));
        self.first.saturating_mul(factor).min(self.cap)
    }
}

/// What a run produced, and whether to run the key again after a backoff.
pub struct Ran<T> {
    pub output: T,
    pub retry: bool,
}

/// Runs one key's work; the task of a key owns it while the key has work.
pub type Worker<K, P, T> = Box<dyn Fn(K, Option<P>) -> BoxFuture<'static, Ran<T>> + Send + Sync>;

struct Entry<P, T> {
    /// A run has been asked for (or a retry is due) that has not started yet.
    wanted: bool,
    payload: Option<P>,
    /// Told the output of the next run to start.
    waiters: Vec<oneshot::Sender<T>>,
    /// Wakes a key waiting out its backoff when a request comes.
    wake: Arc<Notify>,
}

pub struct WorkQueue<K, P, T> {
    entries: Mutex<HashMap<K, Entry<P, T>>>,
    slots: Semaphore,
    backoff: Backoff,
    stop: CancellationToken,
}

impl<K, P, T> WorkQueue<K, P, T>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    P: Send + 'static,
    T: Clone + Send + 'static,
{
    pub fn new(concurrency: usize, backoff: Backoff, stop: CancellationToken) -> Self {
        Self { entries: Mutex::default(), slots: Semaphore::new(concurrency.max(1)), backoff, stop }
    }

    /// Asks for a run of `key`. `waiter`, if given, is told the output of the run that
    /// follows this request (dropped unanswered if the queue stops first). `worker` makes the
    /// worker of a key that has no task yet; it is not called otherwise.
    pub fn enqueue(
        self: &Arc<Self>,
        key: K,
        payload: Option<P>,
        waiter: Option<oneshot::Sender<T>>,
        worker: impl FnOnce() -> Worker<K, P, T>,
    ) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&key) {
            entry.wanted = true;
            if payload.is_some() {
                entry.payload = payload;
            }
            entry.waiters.extend(waiter);
            entry.wake.notify_waiters();
            return;
        }
        if self.stop.is_cancelled() {
            return;
        }
        let entry =
            Entry { wanted: true, payload, waiters: waiter.into_iter().collect(), wake: Arc::new(Notify::new()) };
        entries.insert(key.clone(), entry);
        drop(entries);
        tokio::spawn(Arc::clone(self).drive(key, worker()));
    }

    /// Whether `key` is queued, running, or waiting to be retried.
    pub fn contains(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }

    /// The task of one key: runs it while it is wanted, then forgets it.
    async fn drive(self: Arc<Self>, key: K, worker: Worker<K, P, T>) {
        let mut retries = 0;
        while let Some((payload, waiters)) = self.take(&key) {
            let run = async {
                let _slot = self.slots.acquire().await.expect("the queue's semaphore is never closed");
                // A slot freed by a run the stop ended must not start another.
                if self.stop.is_cancelled() {
                    return None;
                }
                Some(worker(key.clone(), payload).await)
            };
            let ran = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                ran = run => ran,
            };
            let Some(ran) = ran else { break };
            for waiter in waiters {
                // A waiter that gave up is no concern of ours.
                let _ = waiter.send(ran.output.clone());
            }
            if !ran.retry {
                retries = 0;
                continue;
            }
            retries += 1;
            let Some(wake) = self.lock().get(&key).map(|e| Arc::clone(&e.wake)) else { break };
            let woken = wake.notified();
            tokio::pin!(woken);
            // Listening before the check below: a request after it wakes us, one before it is seen.
            woken.as_mut().enable();
            if !self.retry_due(&key) {
                continue;
            }
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(self.backoff.after(retries)) => {}
                () = woken => {}
            }
        }
        // Stopped, or nothing left: either way the key is forgotten (its waiters hear nothing).
        self.lock().remove(&key);
    }

    /// The next run's payload and waiters, if a run is wanted; otherwise forgets the key, in
    /// the same critical section, so a request that comes after finds no entry and starts a
    /// new task.
    fn take(&self, key: &K) -> Option<(Option<P>, Vec<oneshot::Sender<T>>)> {
        let mut entries = self.lock();
        let entry = entries.get_mut(key)?;
        if !entry.wanted {
            entries.remove(key);
            return None;
        }
        entry.wanted = false;
        Some((entry.payload.take(), std::mem::take(&mut entry.waiters)))
    }

    /// Marks a retry due; `false` when a request came while the key ran (it runs again at once).
    fn retry_due(&self, key: &K) -> bool {
        let mut entries = self.lock();
        match entries.get_mut(key) {
            Some(entry) if !entry.wanted => {
                entry.wanted = true;
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<P, T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A run as the probe saw it begin: key, payload, when.
    type Run = (&'static str, Option<u32>, tokio::time::Instant);

    /// Counts runs per key and in flight; a run takes `work` of virtual time; runs retry while
    /// `failing` is above zero (decremented by each run).
    #[derive(Clone, Default)]
    struct Probe {
        runs: Arc<Mutex<Vec<Run>>>,
        in_flight: Arc<Mutex<HashMap<&'static str, usize>>>,
        most_in_flight_per_key: Arc<AtomicUsize>,
        most_in_flight: Arc<AtomicUsize>,
        failing: Arc<AtomicUsize>,
    }

    impl Probe {
        fn worker(&self, work: Duration) -> Worker<&'static str, u32, usize> {
            let probe = self.clone();
            Box::new(move |key, payload| {
                let probe = probe.clone();
                Box::pin(async move {
                    probe.runs.lock().unwrap().push((key, payload, tokio::time::Instant::now()));
                    {
                        let mut in_flight = probe.in_flight.lock().unwrap();
                        *in_flight.entry(key).or_default() += 1;
                        probe.most_in_flight_per_key.fetch_max(in_flight[key], Ordering::SeqCst);
                        probe.most_in_flight.fetch_max(in_flight.values().sum(), Ordering::SeqCst);
                    }
                    tokio::time::sleep(work).await;
                    *probe.in_flight.lock().unwrap().get_mut(key).unwrap() -= 1;
                    let retry =
                        probe.failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1)).is_ok();
                    Ran { output: probe.runs.lock().unwrap().len(), retry }
                })
            })
        }

        fn runs_of(&self, key: &str) -> Vec<(Option<u32>, tokio::time::Instant)> {
            self.runs.lock().unwrap().iter().filter(|(k, _, _)| *k == key).map(|(_, p, t)| (*p, *t)).collect()
        }
    }

    const BACKOFF: Backoff = Backoff { first: Duration::from_secs(1), cap: Duration::from_secs(4) };

    fn queue(concurrency: usize) -> (Arc<WorkQueue<&'static str, u32, usize>>, CancellationToken) {
        let stop = CancellationToken::new();
        (Arc::new(WorkQueue::new(concurrency, BACKOFF, stop.clone())), stop)
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let after: Vec<u64> = (1..=5).map(|n| BACKOFF.after(n).as_secs()).collect();
        assert_eq!(after, [1, 2, 4, 4, 4]);
        assert_eq!(BACKOFF.after(u32::MAX), BACKOFF.cap);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_while_queued_merge_and_the_newest_payload_wins() {
        let (queue, _stop) = queue(1);
        let probe = Probe::default();
        let work = Duration::from_secs(1);
        // "a" holds the only slot, so "b" stays queued while it is asked for three times.
        queue.enqueue("a", None, None, || probe.worker(work));
        tokio::task::yield_now().await;
        queue.enqueue("b", Some(1), None, || probe.worker(work));
        queue.enqueue("b", Some(2), None, || probe.worker(work));
        queue.enqueue("b", None, None, || probe.worker(work));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(probe.runs_of("b").iter().map(|(p, _)| *p).collect::<Vec<_>>(), [Some(2)]);
        assert!(!queue.contains(&"b"), "a key with nothing left to do is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_runs_once_at_a_time_and_again_after_a_request_made_while_it_ran() {
        let (queue, _stop) = queue(8);
        let probe = Probe::default();
        let work = Duration::from_secs(2);
        queue.enqueue("a", None, None, || probe.worker(work));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (tell, told) = oneshot::channel();
        queue.enqueue("a", Some(7), Some(tell), || probe.worker(work));
        queue.enqueue("a", None, None, || probe.worker(work));
        // Told the run that followed the request, not the one under way when it came.
        assert_eq!(told.await.unwrap(), 2);
        let runs = probe.runs_of("a");
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1].0, Some(7));
        assert!(runs[1].1 - runs[0].1 >= work, "the second run began after the first ended");
        assert_eq!(probe.most_in_flight_per_key.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_concurrency_keys_run_at_once() {
        let (queue, _stop) = queue(3);
        let probe = Probe::default();
        let keys = ["a", "b", "c", "d", "e", "f", "g"];
        for key in keys {
            queue.enqueue(key, None, None, || probe.worker(Duration::from_secs(1)));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(probe.runs.lock().unwrap().len(), keys.len());
        assert_eq!(probe.most_in_flight.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_asks_for_it_is_retried_after_a_doubling_backoff_that_a_request_cuts_short() {
        let (queue, _stop) = queue(1);
        let probe = Probe::default();
        probe.failing.store(4, Ordering::SeqCst);
        let work = Duration::ZERO;
        queue.enqueue("a", None, None, || probe.worker(work));
        tokio::time::sleep(Duration::from_secs(4)).await;
        let at: Vec<(Option<u32>, tokio::time::Instant)> = probe.runs_of("a");
        let gaps: Vec<u64> = at.windows(2).map(|w| (w[1].1 - w[0].1).as_secs()).collect();
        assert_eq!(gaps, [1, 2], "retried after 1 s, then 2 s");
        // The third retry is due 4 s after the third run; a request now runs it at once.
        queue.enqueue("a", Some(9), None, || probe.worker(work));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        let runs = probe.runs_of("a");
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[3].0, Some(9));
        assert!(runs[3].1 - runs[2].1 < Duration::from_secs(2));
        // The fourth run failed too: the retry after it waits again (4 s), then succeeds.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(probe.runs_of("a").len(), 5);
        assert!(!queue.contains(&"a"));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_runs_after_the_queue_stops_and_waiters_hear_so() {
        let (queue, stop) = queue(1);
        let probe = Probe::default();
        queue.enqueue("a", None, None, || probe.worker(Duration::from_secs(5)));
        let (tell, told) = oneshot::channel();
        queue.enqueue("b", None, Some(tell), || probe.worker(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
        assert!(told.await.is_err(), "b never ran: its waiter is dropped unanswered");
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue.enqueue("c", None, None, || probe.worker(Duration::ZERO));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(probe.runs.lock().unwrap().iter().map(|(k, _, _)| *k).collect::<Vec<_>>(), ["a"]);
        assert!(!queue.contains(&"a") && !queue.contains(&"b") && !queue.contains(&"c"));
    }
}
