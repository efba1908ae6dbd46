//! Why a store operation failed.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (I/O, constraint, full disk ...).
    #[error("database: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database server cannot be reached (refused, timed out, connection
    /// lost): the same write may succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database was written by a newer version of Portcullis.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// A stored value cannot be read back (edited by hand, or a bug).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The writer thread could not be started.
    #[error("event writer: {0}")]
    Writer(#[from] std::io::Error),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// Connection problems are [`StoreError::Unavailable`], the rest
/// [`StoreError::Database`].
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        crate::pg::pg_error(e)
    }
}
