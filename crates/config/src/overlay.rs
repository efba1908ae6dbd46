//! The console overlay: the sections an operator edits in the console
//! (policies, rate limits, the allow and deny lists), kept apart from the
//! file. The configuration in force is the file with every section the
//! overlay sets replacing the file's; a section left unset stays the file's.

use serde::{Deserialize, Serialize};

use crate::{Config, ConfigError, PolicyConfig, RateLimitRule};

/// Sections that replace the file's when set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Overlay {
    pub policies: Option<Vec<PolicyConfig>>,
    pub rate_limits: Option<Vec<RateLimitRule>>,
    pub ip_lists: OverlayLists,
}

/// `ip_lists.allow` and `ip_lists.deny`; the feeds stay the file's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OverlayLists {
    pub allow: Option<Vec<ipnet::IpNet>>,
    pub deny: Option<Vec<ipnet::IpNet>>,
}

impl Overlay {
    /// Whether no section is set (the file alone is in force).
    pub fn is_empty(&self) -> bool {
        self == &Overlay::default()
    }

    /// `config` with the sections this overlay sets replaced.
    pub fn apply(&self, mut config: Config) -> Config {
        if let Some(policies) = &self.policies {
            config.policies = policies.clone();
        }
        if let Some(rules) = &self.rate_limits {
            config.rate_limits = rules.clone();
        }
        if let Some(allow) = &self.ip_lists.allow {
            config.ip_lists.allow = allow.clone();
        }
        if let Some(deny) = &self.ip_lists.deny {
            config.ip_lists.deny = deny.clone();
        }
        config
    }
}

impl Config {
    /// Validates a configuration built in code (an overlay applied to a
    /// file, a test): the same checks as [`Config::parse`], without lines.
    pub fn check(&self) -> Result<(), ConfigError> {
        let errors = crate::validate::validate(self, "");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [ip_lists]
        deny = ["203.0.113.0/24"]
        [[policies]]
        name = "coupon"
        path = "/api/coupon"
        intercept_at = 4
        [[rate_limits]]
        name = "per-ip"
        path = "/"
        rate = 10
        burst = 20
    "#;

    #[test]
    fn set_sections_replace_the_file_and_unset_ones_stay() {
        let file = Config::parse(FILE).unwrap();
        let overlay: Overlay = serde_json::from_str(
            r#"{"policies":[{"name":"vote","path":"/api/vote","intercept_at":3,"mode":"log-only"}],
                "ip_lists":{"allow":["10.0.0.0/8"]}}"#,
        )
        .unwrap();
        let merged = overlay.apply(file.clone());
        assert_eq!(merged.policies.len(), 1);
        assert_eq!(merged.policies[0].name, "vote");
        assert_eq!(merged.rate_limits, file.rate_limits, "unset: the file's");
        assert_eq!(merged.ip_lists.deny, file.ip_lists.deny);
        assert_eq!(merged.ip_lists.allow.len(), 1);
        assert!(merged.check().is_ok());
        assert!(Overlay::default().is_empty() && !overlay.is_empty());
    }

    #[test]
    fn errors_of_a_merged_config_name_the_overlay_field() {
        let overlay: Overlay =
            serde_json::from_str(r#"{"policies":[{"name":"x","path":"api","intercept_at":7}]}"#)
                .unwrap();
        let errors = overlay
            .apply(Config::default())
            .check()
            .unwrap_err()
            .field_errors();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["policies[0].path", "policies[0].intercept_at"]);
        assert_eq!(errors[0].line, None);
    }
}
