//! Layer 1, the edge: IP lists and feeds, connection caps, protocol sanity,
//! traffic classes and the package quota.

pub mod classify;
pub mod conn;
pub mod ipset;
pub mod protocol;
pub mod quota;
