//! The CNI error type: what a plugin prints on stdout (with exit 1) when a
//! command fails. Every layer converts its own errors into [`CniError`],
//! choosing the spec code, so the skeleton can print them uniformly.

use serde_json::{json, Value};

/// Error codes from the CNI spec (§"Error") plus the Go library's extras.
pub mod codes {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration (msg names key and value).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid or missing environment variables (msg names them).
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure, e.g. reading stdin.
    pub const IO: u32 = 5;
    /// Failed to decode content (JSON).
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// `CNI_NETNS` is the plugin's own network namespace (Go library extra).
    pub const INVALID_NETNS: u32 = 8;
    /// Transient failure: the runtime should retry later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot service ADD requests.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Any other failure (Go's `ErrInternal`).
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: a numeric code, a message and optional details.
///
/// `Display` mirrors Go's `types.Error.Error()`: `msg` or `msg; details`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!("; {details}") })]
pub struct CniError {
    code: u32,
    msg: String,
    details: String,
}

/// `Result` with [`CniError`] as the default error.
pub type Result<T, E = CniError> = std::result::Result<T, E>;

impl CniError {
    /// An error with `code` and `msg` and no details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Sets the details (replacing any previous details).
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Shorthand for a code-999 error, for failures that fit no spec code.
    pub fn internal(msg: impl Into<String>) -> Self {
        CniError::new(codes::INTERNAL, msg)
    }

    /// Prefixes the message with `context: ` keeping code and details, so
    /// callers can say where an error happened without losing its code.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.msg = format!("{context}: {}", self.msg);
        self
    }

    /// The numeric CNI error code.
    pub fn code(&self) -> u32 {
        self.code
    }

    /// The short message.
    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// The details (empty when none).
    pub fn details(&self) -> &str {
        &self.details
    }

    /// The error object printed on stdout:
    /// `{"cniVersion","code","msg","details"}` (`details` always present,
    /// possibly empty; Go omits it when empty, which libcni treats the same).
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }

    /// Parses an error object printed by another plugin (a delegate).
    /// Returns `None` when `v` does not look like one (no numeric `code`).
    pub fn from_json(v: &Value) -> Option<CniError> {
        let code = v.get("code")?.as_u64()?;
        let code = u32::try_from(code).ok()?;
        let msg = v.get("msg").and_then(Value::as_str).unwrap_or_default();
        let details = v.get("details").and_then(Value::as_str).unwrap_or_default();
        Some(CniError::new(code, msg).with_details(details))
    }
}

impl From<std::io::Error> for CniError {
    fn from(e: std::io::Error) -> Self {
        CniError::new(codes::IO, e.to_string())
    }
}

impl From<serde_json::Error> for CniError {
    fn from(e: serde_json::Error) -> Self {
        CniError::new(codes::DECODE, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_like_go() {
        let e = CniError::new(7, "bad");
        assert_eq!(e.to_string(), "bad");
        let e = e.with_details("why");
        assert_eq!(e.to_string(), "bad; why");
        assert_eq!(e.code(), 7);
        assert_eq!(e.msg(), "bad");
        assert_eq!(e.details(), "why");
    }

    #[test]
    fn json_round_trip() {
        let e = CniError::new(11, "busy").with_details("lock");
        let v = e.to_json("1.0.0");
        assert_eq!(
            v,
            json!({"cniVersion":"1.0.0","code":11,"msg":"busy","details":"lock"})
        );
        assert_eq!(CniError::from_json(&v), Some(e));
        assert_eq!(CniError::from_json(&json!({"msg":"x"})), None);
        assert_eq!(
            CniError::from_json(&json!({"code":3})),
            Some(CniError::new(3, ""))
        );
    }

    #[test]
    fn conversions_pick_codes() {
        let io: CniError = std::io::Error::other("disk").into();
        assert_eq!(io.code(), codes::IO);
        let js: CniError = serde_json::from_str::<Value>("{").unwrap_err().into();
        assert_eq!(js.code(), codes::DECODE);
        assert_eq!(CniError::internal("x").code(), 999);
        assert_eq!(CniError::new(5, "m").context("ctx").msg(), "ctx: m");
    }
}
