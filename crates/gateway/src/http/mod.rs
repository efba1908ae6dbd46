//! The bottom layer of the data path: the canonical request, header
//! helpers and the gateway's own responses. Nothing here knows the
//! configuration or the pipeline.

pub mod canonical;
pub mod chunked;
pub mod cors;
pub mod headers;
pub mod readings;
pub mod respond;
