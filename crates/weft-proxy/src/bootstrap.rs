//! Reading Envoy's bootstrap file (YAML or JSON, told apart by content) and the settings weft
//! takes from it.

use std::net::SocketAddr;
use std::path::Path;

use weft_xds::envoy::config::bootstrap::v3::Bootstrap;

/// Why the bootstrap could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The file could not be read.
    #[error("cannot read bootstrap file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not a valid Bootstrap (the message names the field).
    #[error("bootstrap {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The transcoding error.
        source: weft_xds::json::TranscodeError,
    },
    /// The admin address is unusable.
    #[error("bootstrap: admin.address: {0}")]
    Admin(String),
}

/// Parses bootstrap text: JSON when it starts with `{`, YAML otherwise (YAML is a superset of
/// JSON, but the JSON parser gives better messages for JSON files).
pub fn parse(text: &str, origin: &str) -> Result<Bootstrap, BootstrapError> {
    let parsed = if text.trim_start().starts_with('{') {
        weft_xds::json::from_json::<Bootstrap>(text)
    } else {
        weft_xds::json::from_yaml::<Bootstrap>(text)
    };
    parsed.map_err(|source| BootstrapError::Parse {
        path: origin.to_owned(),
        source,
    })
}

/// Reads and parses a bootstrap file.
pub fn load(path: &Path) -> Result<Bootstrap, BootstrapError> {
    let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// The admin listener address, if the bootstrap has an `admin` section.
pub fn admin_address(b: &Bootstrap) -> Result<Option<SocketAddr>, BootstrapError> {
    let Some(admin) = &b.admin else {
        return Ok(None);
    };
    if admin.address.is_none() {
        return Ok(None);
    }
    crate::cluster::socket_addr(admin.address.as_ref(), "bootstrap", "admin.address")
        .map(Some)
        .map_err(|e| BootstrapError::Admin(e.to_string()))
}
