//! Which worker thread runs the caller: per-worker tables (metrics cells,
//! origin pools) are indexed by it, so that two cores never share them;
//! and when in a worker's turn a request's writes go out.

thread_local! {
    static WORKER_INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of the worker thread running the caller (0 elsewhere).
pub fn worker_index() -> usize {
    WORKER_INDEX.with(|i| i.get())
}

/// Marks the calling thread as worker `index`.
pub fn set_worker_index(index: usize) {
    WORKER_INDEX.with(|i| i.set(index));
}

/// Puts the calling thread under Linux's `SCHED_BATCH` policy. A worker
/// is an event loop that runs whatever is ready and then sleeps in
/// `epoll_wait`; under the default policy every readable socket (a client's
/// request, its origin's answer) woke it at once, preempting the task on its
/// core, and under load it often ran one request per wake-up. As a batch
/// task it is not run ahead of the running task when woken, so it finds
/// several requests ready at each wake-up: `bench/proxy.sh` went from
/// 0.56-0.72x to 0.86-0.98x nginx, with the same socket calls per request
/// and a tenth as many `epoll_wait` calls. Its nice value and its share of
/// the CPU are unchanged, and an idle core still runs it at once.
pub fn schedule_as_batch() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread; `param` outlives the call.
        let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if set != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "cannot schedule the worker as a batch task");
        }
    }
}

/// Resumes the caller once the tasks already ready on this worker have
/// run. A request calls it before writing to its origin and before its
/// response is written, so that a turn of the worker reads and inspects
/// every ready request first and then sends their writes together: a peer
/// asleep in `epoll_wait` (the origin, a client) is woken once per turn
/// instead of once per request, and the kernel does not switch that peer in
/// over the worker in the middle of its turn.
///
/// The task is put straight back at the end of the run queue rather than
/// deferred as `tokio::task::yield_now` does: a deferred task waits for an
/// extra poll of the I/O driver (an `epoll_wait` with no timeout), and with
/// one request per turn that was two spare system calls per request.
pub async fn end_of_turn() {
    let mut requeued = false;
    std::future::poll_fn(|cx| {
        if requeued {
            return std::task::Poll::Ready(());
        }
        requeued = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[cfg(target_os = "linux")]
    #[test]
    fn a_worker_thread_is_scheduled_as_a_batch_task() {
        let policy = std::thread::spawn(|| {
            super::schedule_as_batch();
            // SAFETY: pid 0 names the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_BATCH);
        // Only the worker itself changes policy.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }

    #[test]
    fn the_tasks_ready_at_the_end_of_a_turn_run_before_the_caller_resumes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        runtime.block_on(async {
            let log = |name: &'static str, order: &Arc<Mutex<Vec<&'static str>>>| {
                order.lock().unwrap().push(name);
            };
            let (a, b, c) = (Arc::clone(&order), Arc::clone(&order), Arc::clone(&order));
            let writer = tokio::spawn(async move {
                log("read", &a);
                super::end_of_turn().await;
                log("write", &a);
            });
            let others = [
                tokio::spawn(async move { log("other 1", &b) }),
                tokio::spawn(async move { log("other 2", &c) }),
            ];
            writer.await.unwrap();
            for other in others {
                other.await.unwrap();
            }
        });
        assert_eq!(
            *order.lock().unwrap(),
            ["read", "other 1", "other 2", "write"]
        );
    }
}
