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

/// Resumes the caller once the tasks already woken on this worker have run
/// and its I/O driver has been polled again. A request calls it before
/// writing to its origin and before its response is written, so that a turn
/// of the worker sends its writes together: a peer asleep in `epoll_wait`
/// (the origin, a client) is woken once per turn instead of once per
/// request, and the kernel does not switch that peer in over the worker in
/// the middle of its turn. Wake-ups and the switches they cause were a fifth
/// of the gateway's CPU under load; deferring both writes raised
/// `bench/proxy.sh` from 0.70x to 0.80x nginx. Alone on a worker, it costs
/// one spare `epoll_wait` with no timeout.
pub async fn end_of_turn() {
    tokio::task::yield_now().await;
}
