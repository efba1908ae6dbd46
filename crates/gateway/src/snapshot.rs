//! The memory backend kept across restarts: loaded on start, saved every
//! `[state] snapshot_every_s` and on shutdown (see `portcullis_state`'s
//! snapshot format). Without it every restart or deployment would forget
//! bans and nonces and make every device and account look new.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_state::MemoryStore;

/// Where this node's memory backend is saved.
pub struct StateSnapshot {
    store: Arc<MemoryStore>,
    path: PathBuf,
}

impl StateSnapshot {
    /// Loads `path` into `store` (a fresh store); a damaged file is logged
    /// and the gateway starts with what could be read.
    pub fn load(store: Arc<MemoryStore>, path: PathBuf) -> StateSnapshot {
        match store.load_snapshot(&path) {
            Ok(loaded) => tracing::info!(
                path = %path.display(),
                keys = loaded.keys,
                skipped = loaded.skipped,
                "state snapshot loaded"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot read the state snapshot; starting with what was read"
            ),
        }
        StateSnapshot { store, path }
    }

    /// Saves now, off the async threads.
    pub async fn save(&self) {
        let (store, path) = (Arc::clone(&self.store), self.path.clone());
        let saved = tokio::task::spawn_blocking(move || store.save_snapshot(&path)).await;
        match saved {
            Ok(Ok(keys)) => {
                tracing::debug!(path = %self.path.display(), keys, "state snapshot saved")
            }
            Ok(Err(e)) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot save the state snapshot")
            }
            Err(e) => tracing::warn!(error = %e, "the state snapshot task failed"),
        }
    }

    /// Saves every `every` until the process ends.
    pub fn keep_saving(self: Arc<Self>, every: Duration) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                self.save().await;
            }
        });
    }
}
