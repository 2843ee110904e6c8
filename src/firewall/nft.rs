//! Thin wrapper over the `nft` binary: JSON listings in, transactions out.
//!
//! Reads use `nft -j list ...` (stable JSON schema); writes are a single
//! `nft -f -` transaction, so a partially applied change is impossible.

use serde_json::Value;

use super::error::FirewallError;
use super::exec::{is_not_found, Cmd};

/// One rule from a JSON listing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NftRule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
    pub expr: Value,
}

/// Tables, chains and rules of one JSON listing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    pub chains: Vec<String>,
    pub rules: Vec<NftRule>,
}

/// `nft -j list <what...>`; a missing table or chain gives an empty listing.
pub(crate) fn list(what: &[&str]) -> Result<Listing, FirewallError> {
    let mut args = vec!["-j", "list"];
    args.extend_from_slice(what);
    let cmd = Cmd::new("nft", &args);
    let shown = cmd.display();
    match cmd.run() {
        Ok(out) => {
            parse_listing(&out.stdout).map_err(|reason| FirewallError::Parse { cmd: shown, reason })
        }
        Err(e) if is_not_found(&e) => Ok(Listing::default()),
        Err(e) => Err(e),
    }
}

fn parse_listing(json: &str) -> Result<Listing, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no \"nftables\" array")?;
    let mut listing = Listing::default();
    for item in items {
        if let Some(chain) = item.get("chain") {
            let name = chain
                .get("name")
                .and_then(Value::as_str)
                .ok_or("chain without name")?;
            listing.chains.push(name.to_string());
        }
        if let Some(rule) = item.get("rule") {
            let field = |k: &str| rule.get(k).ok_or(format!("rule without {k}"));
            listing.rules.push(NftRule {
                chain: field("chain")?.as_str().unwrap_or_default().to_string(),
                handle: field("handle")?
                    .as_u64()
                    .ok_or("rule handle is not a number")?,
                comment: rule
                    .get("comment")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                expr: rule.get("expr").cloned().unwrap_or(Value::Null),
            });
        }
    }
    Ok(listing)
}

/// Applies a text transaction (`nft -f -`).
pub(crate) fn apply_text(script: &str) -> Result<(), FirewallError> {
    Cmd::new("nft", &["-f", "-"]).stdin(script).run().map(drop)
}

/// Applies a JSON transaction (`nft -j -f -`): names are passed as JSON
/// strings, so container ids and ifnames need no nft quoting.
pub(crate) fn apply_json(commands: Vec<Value>) -> Result<(), FirewallError> {
    let doc = serde_json::json!({ "nftables": commands });
    Cmd::new("nft", &["-j", "-f", "-"])
        .stdin(doc.to_string())
        .run()
        .map(drop)
}

/// True if the `nft` command works here (the reference's `SupportsNFTables`).
pub(crate) fn usable() -> bool {
    Cmd::new(
        "nft",
        &["--check", "add", "table", "inet", "cni_plugins_probe"],
    )
    .run()
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listing() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
          {"table":{"family":"inet","name":"t","handle":1}},
          {"chain":{"family":"inet","table":"t","name":"masq_checks","handle":1}},
          {"rule":{"family":"inet","table":"t","chain":"masq_checks","handle":3,"comment":"abc",
             "expr":[{"masquerade":null}]}},
          {"rule":{"family":"inet","table":"t","chain":"masq_checks","handle":4,"expr":[]}}]}"#;
        let l = parse_listing(json).unwrap();
        assert_eq!(l.chains, vec!["masq_checks"]);
        assert_eq!(l.rules.len(), 2);
        assert_eq!(l.rules[0].handle, 3);
        assert_eq!(l.rules[0].comment.as_deref(), Some("abc"));
        assert_eq!(l.rules[1].comment, None);
        assert!(parse_listing("{}").is_err());
    }
}
