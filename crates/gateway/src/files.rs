//! Files the configuration names (feeds, lists, certificates): their
//! modification stamps, so that a change triggers a reload.

use std::path::Path;
use std::time::SystemTime;

/// When `path` was last modified, if it can be read.
pub fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
