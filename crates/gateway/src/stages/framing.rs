//! A head that carried both `Content-Length` and
//! `Transfer-Encoding`: a smuggling probe, refused (the connection closes
//! after the answer).

use super::{Exchange, Flow, Stage};
use crate::context::Layer;

pub struct Framing;

impl Stage for Framing {
    const NAME: &'static str = "framing";
    const LAYER: Layer = Layer::Edge;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        if ex.framing_conflict {
            ex.ctx.refuse(
                "cl_te_conflict",
                "content-length with transfer-encoding",
                400,
            );
        }
        Flow::after(&ex.ctx)
    }
}
