//! Which worker thread runs the caller: per-worker tables (metrics cells,
//! origin pools) are indexed by it, so that two cores never share them.

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
