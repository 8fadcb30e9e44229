//! `[control]` and `[metrics]` in the config: the control socket (see `crate::control`) and the
//! Prometheus endpoint, validated into their typed forms.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::sink::duration;
use super::values::{parse_permissions, resolve_id, IdKind};
use super::{invalid, Error, NameOrId, RawDuration, SourceConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub enabled: Option<bool>,
    pub path: Option<PathBuf>,
    pub permissions: Option<String>,
    #[serde(default)]
    pub allow_uids: Vec<NameOrId>,
    pub max_request_bytes: Option<usize>,
    pub request_timeout: Option<RawDuration>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
}

/// `[control]`: where the control socket listens and whom it serves.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub enabled: bool,
    pub path: PathBuf,
    pub permissions: u32,
    /// Served besides the gateway's own uid and root.
    pub allow_uids: Vec<u32>,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

/// `[metrics]`: the Prometheus text endpoint, if any.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    pub listen: Option<SocketAddr>,
}

/// The control socket's default path: beside the first UNIX source's socket, with the extension
/// `.ctl` (`/run/ringway.sock` → `/run/ringway.ctl`); without one, beside the default socket.
pub fn default_control_path(sources: &[SourceConfig]) -> PathBuf {
    let ingest = sources
        .iter()
        .find_map(|s| match s {
            SourceConfig::UnixSocketServer(u) => Some(u.path.clone()),
            _ => None,
        })
        .unwrap_or_else(super::default_socket_path);
    control_path_beside(&ingest)
}

/// `x/name.sock` → `x/name.ctl`.
pub fn control_path_beside(socket: &Path) -> PathBuf {
    socket.with_extension("ctl")
}

impl RawControl {
    pub fn validate(self, sources: &[SourceConfig]) -> Result<ControlConfig, Error> {
        let permissions = match &self.permissions {
            None => 0o600,
            Some(p) => parse_permissions(p).map_err(|m| invalid("control.permissions", m))?,
        };
        let mut allow_uids = Vec::new();
        for (i, u) in self.allow_uids.iter().enumerate() {
            allow_uids.push(
                resolve_id(u, IdKind::User)
                    .map_err(|m| invalid(format!("control.allow_uids[{i}]"), m))?,
            );
        }
        let max_request_bytes = self.max_request_bytes.unwrap_or(64 * 1024);
        if !(256..=16 << 20).contains(&max_request_bytes) {
            return Err(invalid(
                "control.max_request_bytes",
                "between 256 bytes and 16 MiB",
            ));
        }
        let max_connections = self.max_connections.unwrap_or(1024);
        if max_connections == 0 {
            return Err(invalid("control.max_connections", "at least 1"));
        }
        let path = self.path.unwrap_or_else(|| default_control_path(sources));
        let parent_len = path.parent().map_or(1, |p| p.as_os_str().len().max(1));
        if path.as_os_str().len() > 107 || parent_len + super::values::PRIVATE_PATH_EXTRA > 107 {
            return Err(invalid(
                "control.path",
                format!("{} is too long for a UNIX socket path", path.display()),
            ));
        }
        if let Some(s) = sources.iter().find(|s| match s {
            SourceConfig::UnixSocketServer(u) => u.path == path,
            _ => false,
        }) {
            return Err(invalid(
                "control.path",
                format!("{} is the socket of source {:?}", path.display(), s.name()),
            ));
        }
        Ok(ControlConfig {
            enabled: self.enabled.unwrap_or(true),
            path,
            permissions,
            allow_uids,
            max_request_bytes,
            request_timeout: duration(
                &self.request_timeout,
                Duration::from_secs(5),
                "control.request_timeout",
            )?,
            max_connections,
        })
    }
}

impl RawMetrics {
    pub fn validate(self) -> Result<MetricsConfig, Error> {
        let listen = match self.listen {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{s:?} is not an address with a port, like \"127.0.0.1:9898\""),
                )
            })?),
        };
        Ok(MetricsConfig { listen })
    }
}
