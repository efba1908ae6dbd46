//! The gateway's own endpoints under `/.portcullis/` (challenge, verify,
//! captcha, the SDK files), and the CORS preflights of protected routes
//! from configured web origins. Either way the gateway answers and the
//! pipeline stops.

use super::{Exchange, Flow, Stage};
use crate::context::Layer;
use crate::http::cors;
use crate::trust::portal::{self, PortalRequest};

pub struct Portal;

impl Stage for Portal {
    const NAME: &'static str = "portal";
    const LAYER: Layer = Layer::Clean;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let is_portal = portal::is_portal(ex.target.path());
        if cors::is_preflight(&ex.parts.method, &ex.parts.headers)
            && (is_portal || ex.ctx.policy.is_some())
            && let Some(origin) = cors::allowed_origin(&ex.parts.headers, &ex.rt.trust.cors_origins)
        {
            ex.answer = Some(cors::preflight(
                origin,
                &ex.parts.headers,
                &ex.ctx.request_id,
            ));
            return Flow::Stop;
        }
        if !is_portal {
            return Flow::Continue;
        }
        let rt = ex.rt;
        let risk = rt.risk.quick(&ex.ctx).rank;
        let request = PortalRequest {
            parts: &ex.parts,
            body: ex.body.whole(),
            risk,
            load: 0.0,
            tls: ex.tls,
        };
        let answer = portal::serve(&rt.trust, ex.shared.state.as_ref(), &mut ex.ctx, request).await;
        ex.answer = Some(answer);
        Flow::Stop
    }
}
