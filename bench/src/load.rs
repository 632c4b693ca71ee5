//! The load generator: workers that call a job back to back, the harness's HTTP client, and the tally of
//! what failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lambent_testkit::Result;

/// The client the harness uses: a pool large enough to keep one connection per worker alive, no timeout
/// short enough to cut a slow stream.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_default()
}

/// Runs `job` on `concurrency` workers, each calling it again as soon as its call is done, until `jobs` calls
/// have started or `deadline` has passed; the calls' outputs, in no particular order. The worker's number is
/// passed to `job`. (A panicking worker aborts the whole process: the release profile has `panic = "abort"`.)
pub async fn workers<T, F, Fut>(concurrency: usize, jobs: usize, deadline: Option<Instant>, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let remaining = Arc::new(AtomicUsize::new(jobs));
    let handles: Vec<_> = (0..concurrency.max(1))
        .map(|w| {
            let (job, remaining) = (job.clone(), remaining.clone());
            tokio::spawn(async move {
                let mut outputs = Vec::new();
                while deadline.is_none_or(|at| Instant::now() < at)
                    && remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
                {
                    outputs.push(job(w).await);
                }
                outputs
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap_or_default());
    }
    all
}

/// How many of `results` failed, and the first few messages.
pub fn failures<T>(results: impl IntoIterator<Item = Result<T>>) -> (usize, Vec<String>) {
    let mut all = (0, Vec::new());
    for err in results.into_iter().filter_map(std::result::Result::err) {
        all.0 += 1;
        if all.1.len() < 5 {
            all.1.push(err.to_string());
        }
    }
    all
}
