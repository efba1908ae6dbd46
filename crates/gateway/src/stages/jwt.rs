//! On core URLs that require a JWT: a valid token (401 otherwise) that
//! allows this request (403 otherwise: over-privileged).

use http::header;

use super::identify::verified_token;
use super::{Exchange, Flow, Stage};
use crate::context::{Demand, Layer};

pub struct Jwt;

impl Stage for Jwt {
    const NAME: &'static str = "jwt";
    const LAYER: Layer = Layer::Clean;
    const CORE_URLS_ONLY: bool = true;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let rt = ex.rt;
        let Some(requirement) = ex.policy().and_then(|p| p.config.jwt.as_ref()) else {
            return Flow::Continue;
        };
        // The identify stage verified the token already when it reads an account claim.
        let verified = ex
            .ctx
            .jwt
            .take()
            .unwrap_or_else(|| verified_token(rt, &ex.parts.headers));
        let token = match verified {
            Ok(token) => token,
            Err(e) => {
                let code = e.as_str();
                let demand = Demand::Refuse { status: 401, code };
                ex.ctx.add(code, e.to_string(), demand);
                return Flow::Stop;
            }
        };
        let json = ex
            .parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("json"));
        let view = portcullis_authz::RequestView {
            path: ex.target.path(),
            query: ex.target.query.as_deref().unwrap_or(""),
            json_body: ex.body.whole().filter(|_| json),
        };
        if let Err(denial) = rt.jwt.check(&token, requirement, &view) {
            let code = denial.as_str();
            let evidence = format!("{code}: {denial}");
            let demand = Demand::Refuse { status: 403, code };
            ex.ctx.add("over_privileged", evidence, demand);
        }
        Flow::after(&ex.ctx)
    }
}
