//! The TLS settings of `https://` backends: a backend's own `tls` over the top-level
//! `upstream_tls`, field by field, loaded into a [`BackendTls`] (files relative to the config's
//! folder, read and checked here, so `lbhost check` and a reload refuse a bad one).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use serde::Deserialize;

use super::{BackendProtocol, ConfigError};
use crate::tls::client::{client_config, system_roots, BuiltClient, ClientFiles};
use crate::tls::BackendTls;

/// `tls` of a backend, or the top-level `upstream_tls`, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUpstreamTls {
    pub ca: Option<String>,
    pub server_name: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub verify: Option<bool>,
}

/// Builds the [`BackendTls`] of each `https://` backend of one config file.
pub(super) struct UpstreamTls<'a> {
    top: Option<FileUpstreamTls>,
    base: &'a Path,
    /// Client configs built so far: backends with the same files share one (and its session
    /// cache).
    built: HashMap<ClientFiles, BuiltClient>,
    /// The system's roots, once a backend needed them.
    system: Option<Arc<RootCertStore>>,
    /// Whether a backend used the top-level settings.
    used_top: bool,
}

/// A field's value and the field that gave it.
type Origin<'t> = (&'t str, String);

impl<'a> UpstreamTls<'a> {
    pub(super) fn new(top: Option<FileUpstreamTls>, base: &'a Path) -> Self {
        UpstreamTls {
            top,
            base,
            built: HashMap::new(),
            system: None,
            used_top: false,
        }
    }

    /// The TLS settings of `backends[i]`, an `https://` URL whose host is `host`, from its own
    /// `tls` (`own`) over `upstream_tls`; ALPN offers what `protocol` speaks.
    pub(super) fn backend(
        &mut self,
        i: usize,
        host: &str,
        own: Option<&FileUpstreamTls>,
        protocol: BackendProtocol,
    ) -> Result<BackendTls, ConfigError> {
        let own_prefix = format!("backends[{i}].tls");
        let top = self.top.clone().unwrap_or_default();
        self.used_top |= self.top.is_some();
        let pick = |own: Option<&String>, top: Option<&String>, field: &str| -> Option<String> {
            own.map(|_| format!("{own_prefix}.{field}"))
                .or_else(|| top.map(|_| format!("upstream_tls.{field}")))
        };
        let own = own.cloned().unwrap_or_default();
        let ca = own.ca.as_deref().or(top.ca.as_deref()).zip(pick(
            own.ca.as_ref(),
            top.ca.as_ref(),
            "ca",
        ));
        let server_name = own
            .server_name
            .as_deref()
            .or(top.server_name.as_deref())
            .zip(pick(
                own.server_name.as_ref(),
                top.server_name.as_ref(),
                "server_name",
            ));
        let (identity, identity_prefix) = if own.cert.is_some() || own.key.is_some() {
            (
                (own.cert.as_deref(), own.key.as_deref()),
                own_prefix.clone(),
            )
        } else {
            (
                (top.cert.as_deref(), top.key.as_deref()),
                "upstream_tls".to_string(),
            )
        };
        let verify = own.verify.or(top.verify).unwrap_or(true);
        let field = if own.ca.is_some() || own.cert.is_some() || own.verify.is_some() {
            own_prefix
        } else {
            "upstream_tls".to_string()
        };
        let mut files = self.files(ca, identity, &identity_prefix, verify)?;
        files.http2 = protocol == BackendProtocol::H2;
        let name = match server_name {
            Some((name, field)) => server_name_of(&field, name)?,
            None => server_name_of(&format!("backends[{i}].url"), host)?,
        };
        let built = self.build(&files, &field)?;
        let mut paths: Vec<_> = files.ca.iter().cloned().collect();
        if let Some((cert, key)) = &files.identity {
            paths.extend([cert.clone(), key.clone()]);
        }
        Ok(BackendTls {
            server_name: name,
            verify,
            files: paths,
            client_certificate: files.identity.as_ref().map(|(cert, _)| cert.clone()),
            client_certificate_not_after: built.certificate_not_after,
            client: built.config,
            fingerprint: built.fingerprint,
        })
    }

    /// Checks the files `upstream_tls` names even when no backend uses them.
    pub(super) fn finish(mut self) -> Result<(), ConfigError> {
        let Some(top) = self.top.clone() else {
            return Ok(());
        };
        if self.used_top {
            return Ok(());
        }
        let ca = top
            .ca
            .as_deref()
            .map(|ca| (ca, "upstream_tls.ca".to_string()));
        let identity = (top.cert.as_deref(), top.key.as_deref());
        if let Some((name, field)) = top
            .server_name
            .as_deref()
            .map(|n| (n, "upstream_tls.server_name"))
        {
            server_name_of(field, name)?;
        }
        let files = self.files(ca, identity, "upstream_tls", top.verify.unwrap_or(true))?;
        // Not dialed: the system's roots are not needed to check the files.
        self.system = Some(Arc::new(RootCertStore::empty()));
        self.build(&files, "upstream_tls").map(drop)
    }

    /// The files, resolved against the config's folder.
    fn files(
        &self,
        ca: Option<Origin<'_>>,
        identity: (Option<&str>, Option<&str>),
        identity_prefix: &str,
        verify: bool,
    ) -> Result<ClientFiles, ConfigError> {
        let ca = match ca {
            Some((ca, field)) => Some(self.base.join(super::validate::plain_path(&field, ca)?)),
            None => None,
        };
        let identity = match identity {
            (Some(cert), Some(key)) => Some((
                self.base.join(super::validate::plain_path(
                    &format!("{identity_prefix}.cert"),
                    cert,
                )?),
                self.base.join(super::validate::plain_path(
                    &format!("{identity_prefix}.key"),
                    key,
                )?),
            )),
            (None, None) => None,
            _ => {
                return Err(ConfigError::field(
                    identity_prefix,
                    "\"cert\" and \"key\" go together (a client certificate and its key)",
                ))
            }
        };
        Ok(ClientFiles {
            ca,
            identity,
            verify,
            http2: false,
        })
    }

    /// The client config of `files`, built once per config load.
    fn build(&mut self, files: &ClientFiles, field: &str) -> Result<BuiltClient, ConfigError> {
        if let Some(built) = self.built.get(files) {
            return Ok(built.clone());
        }
        let system = &mut self.system;
        let roots = || match system {
            Some(roots) => Ok(Arc::clone(roots)),
            None => {
                let roots = system_roots()?;
                *system = Some(Arc::clone(&roots));
                Ok(roots)
            }
        };
        let built =
            client_config(files, roots).map_err(|e| ConfigError::field(field, e.to_string()))?;
        self.built.insert(files.clone(), built.clone());
        Ok(built)
    }
}

/// `name` as the server name of a TLS connection: a DNS name or an IP address.
fn server_name_of(field: &str, name: &str) -> Result<ServerName<'static>, ConfigError> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|_| {
        ConfigError::field(
            field,
            format!("{name:?} is not a DNS name or IP address for TLS"),
        )
    })
}
