//! The gateway as the console sees it: [`portcullis_console::Gateway`]
//! over the shared state, and the console's setup at start and on reload.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{Config, FieldError, Overlay};
use portcullis_console::{ApplyFailure, BanInfo, BoxFuture, ConsoleDb, ConsoleOptions, Gateway};
use portcullis_store::{EventStore, WriterStats};

use crate::Shared;
use crate::bans::Ban;
use crate::reload::{self, ApplyError};

/// The console's handle on the running gateway.
pub struct GatewayHandle(pub Arc<Shared>);

fn ban_info(ban: Ban) -> BanInfo {
    BanInfo {
        ip: ban.ip,
        reason: ban.reason,
        until: ban.until,
    }
}

impl Gateway for GatewayHandle {
    fn effective_config(&self) -> Config {
        self.0.runtime.load().config.clone()
    }

    fn file_config(&self) -> Config {
        self.0.control.file_config()
    }

    fn overlay(&self) -> Overlay {
        self.0.control.overlay()
    }

    fn check_overlay(&self, overlay: &Overlay) -> Result<(), Vec<FieldError>> {
        self.0
            .control
            .check(overlay)
            .map(drop)
            .map_err(|e| e.field_errors())
    }

    fn apply_overlay(&self, overlay: Overlay) -> Result<u64, ApplyFailure> {
        reload::apply_overlay(&self.0, overlay).map_err(|e| match e {
            ApplyError::Invalid(e) => ApplyFailure::Invalid(e.field_errors()),
            ApplyError::Refused(e) => ApplyFailure::Refused(format!("{e:#}")),
        })
    }

    fn config_version(&self) -> u64 {
        self.0.runtime.load().version
    }

    fn bans(&self) -> Vec<BanInfo> {
        self.0.bans.list().into_iter().map(ban_info).collect()
    }

    fn ban(
        &self,
        ip: IpAddr,
        ttl: Duration,
        reason: String,
    ) -> BoxFuture<'_, Result<BanInfo, String>> {
        Box::pin(async move {
            let ban = self.0.bans.ban(ip, ttl, &reason).await;
            ban.map(ban_info).map_err(|e| e.to_string())
        })
    }

    fn lift_ban(&self, ip: IpAddr) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move { self.0.bans.lift(ip).await.map_err(|e| e.to_string()) })
    }

    fn revoke_clearance(&self, cid: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let runtime = self.0.runtime.load_full();
            crate::trust::portal::revoke(self.0.state.as_ref(), &runtime.trust, &cid)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn metrics_text(&self) -> String {
        crate::admin::metrics_text(&self.0)
    }

    fn store_stats(&self) -> Option<WriterStats> {
        self.0.events.store_stats()
    }
}

/// The console's routes over the running gateway.
pub fn router(
    shared: &Arc<Shared>,
    db: Arc<ConsoleDb>,
    events: Option<Arc<dyn EventStore>>,
) -> axum::Router {
    let options = ConsoleOptions {
        config: shared.runtime.load().config.console.clone(),
        admin_token: shared.admin_token.clone(),
        events,
    };
    let handle = Arc::new(GatewayHandle(Arc::clone(shared)));
    portcullis_console::router(db, handle, options)
}
