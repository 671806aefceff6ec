//! The queue behind notifications: jobs of one key run one after the other, in the order
//! they were pushed; jobs of different keys run side by side, at most `concurrency` at
//! once, so a key whose jobs hang holds up only itself (and one slot). At most `limit`
//! jobs wait or run; [`KeyedQueue::push`] past that refuses at once. Nothing here
//! waits for a job: one dispatcher task owns the waiting jobs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

pub struct KeyedQueue<K, J> {
    tx: mpsc::UnboundedSender<(K, J)>,
    /// Jobs pushed and not finished: bounds what the dispatcher holds.
    queued: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    limit: usize,
}

impl<K, J> KeyedQueue<K, J>
where
    K: Clone + Eq + Hash + Send + 'static,
    J: Send + 'static,
{
    /// Starts the dispatcher (inside a tokio runtime); it ends when the queue is dropped
    /// and every job pushed has run.
    pub fn start<F, Fut>(limit: usize, concurrency: usize, run: F) -> Self
    where
        F: Fn(J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Notify::new());
        let dispatcher = Dispatcher {
            run,
            concurrency: concurrency.max(1),
            waiting: HashMap::new(),
            ready: VecDeque::new(),
            busy: HashSet::new(),
            running: JoinSet::new(),
            keys: HashMap::new(),
            queued: Arc::clone(&queued),
            idle: Arc::clone(&idle),
        };
        tokio::spawn(dispatcher.serve(rx));
        KeyedQueue {
            tx,
            queued,
            idle,
            limit,
        }
    }

    /// Queues `job` after the other jobs of `key`. `false`: the queue is full (or
    /// stopped) and the job was dropped.
    pub fn push(&self, key: K, job: J) -> bool {
        let taken = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return false;
        }
        if self.tx.send((key, job)).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Waits until every job pushed has run, at most `limit`. Returns whether they all did.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.queued.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

struct Dispatcher<K, J, F> {
    run: F,
    concurrency: usize,
    /// Jobs not started, per key, in push order.
    waiting: HashMap<K, VecDeque<J>>,
    /// Keys with waiting jobs and none running, in the order they became so.
    ready: VecDeque<K>,
    /// Keys with a job running.
    busy: HashSet<K>,
    running: JoinSet<()>,
    keys: HashMap<tokio::task::Id, K>,
    queued: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl<K, J, F, Fut> Dispatcher<K, J, F>
where
    K: Clone + Eq + Hash + Send + 'static,
    J: Send + 'static,
    F: Fn(J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    async fn serve(mut self, mut rx: mpsc::UnboundedReceiver<(K, J)>) {
        let mut open = true;
        loop {
            self.start_ready();
            if !open && self.running.is_empty() {
                return;
            }
            tokio::select! {
                received = rx.recv(), if open => match received {
                    Some((key, job)) => self.add(key, job),
                    None => open = false,
                },
                Some(done) = self.running.join_next_with_id() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(error) => error.id(),
                    };
                    self.finished(id);
                }
            }
        }
    }

    fn add(&mut self, key: K, job: J) {
        let jobs = self.waiting.entry(key.clone()).or_default();
        jobs.push_back(job);
        if jobs.len() == 1 && !self.busy.contains(&key) {
            self.ready.push_back(key);
        }
    }

    fn start_ready(&mut self) {
        while self.running.len() < self.concurrency {
            let Some(key) = self.ready.pop_front() else {
                return;
            };
            let Some(jobs) = self.waiting.get_mut(&key) else {
                continue;
            };
            let Some(job) = jobs.pop_front() else {
                continue;
            };
            if jobs.is_empty() {
                self.waiting.remove(&key);
            }
            self.busy.insert(key.clone());
            let handle = self.running.spawn((self.run)(job));
            self.keys.insert(handle.id(), key);
        }
    }

    fn finished(&mut self, id: tokio::task::Id) {
        if let Some(key) = self.keys.remove(&id) {
            self.busy.remove(&key);
            if self.waiting.contains_key(&key) {
                self.ready.push_back(key);
            }
        }
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.idle.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn a_hanging_key_holds_up_only_itself_and_order_holds_per_key() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&done);
        let queue = KeyedQueue::start(100, 2, move |(key, n): (&'static str, u32)| {
            let seen = Arc::clone(&seen);
            async move {
                if key == "hang" {
                    std::future::pending::<()>().await;
                }
                seen.lock().unwrap().push((key, n));
            }
        });
        assert!(queue.push("hang", ("hang", 0)));
        for n in 0..5 {
            assert!(queue.push("a", ("a", n)));
            assert!(queue.push("b", ("b", n)));
        }
        let all = async {
            while done.lock().unwrap().len() < 10 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .unwrap();
        let done = done.lock().unwrap().clone();
        for key in ["a", "b"] {
            let order: Vec<u32> = done.iter().filter(|d| d.0 == key).map(|d| d.1).collect();
            assert_eq!(order, [0, 1, 2, 3, 4], "{done:?}");
        }
        assert!(
            !queue.wait_idle(Duration::from_millis(20)).await,
            "one still hangs"
        );
    }

    #[tokio::test]
    async fn past_its_limit_the_queue_refuses_at_once() {
        let queue = KeyedQueue::start(3, 1, |_: u32| std::future::pending::<()>());
        let pushed: Vec<bool> = (0..5).map(|n| queue.push(0u8, n)).collect();
        assert_eq!(pushed, [true, true, true, false, false]);
    }
}
