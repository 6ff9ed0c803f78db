//! `pacerelle relay`: runs the development relay of `pacerelle-relay` (its library entry point,
//! [`Relay::spawn`], the same one its own binary uses) until Ctrl-C or SIGTERM, configured from
//! flags and an optional JSON file, and prints what scripts need on stdout as `.env` lines.

use crate::CliError;
use pacerelle_relay::{Relay, RelayConfig, parse_identity, random_hex};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `pacerelle relay`'s options.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Where to listen (default 127.0.0.1:8080; port 0 lets the system pick one). Overrides the
    /// file's `listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// An agent that may connect (repeatable). With no agent here or in the file, one is created
    /// and printed.
    #[arg(long = "agent", value_name = "ID=TOKEN", value_parser = parse_identity)]
    pub agents: Vec<(String, String)>,
    /// A person that may connect (repeatable). With no person here or in the file, one is
    /// created and printed.
    #[arg(long = "person", value_name = "ID=TOKEN", value_parser = parse_identity)]
    pub persons: Vec<(String, String)>,
    /// A JSON file: {"listen": "127.0.0.1:8080", "agents": {"ID": "TOKEN"}, "persons": {"ID":
    /// "TOKEN"}, "max_json_bytes", "max_blob_bytes", "max_frame_bytes", "max_one_time_prekeys"},
    /// every field optional. Keeps tokens out of the process list; flags add to it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The configuration file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayFile {
    listen: Option<SocketAddr>,
    #[serde(default)]
    agents: BTreeMap<String, String>,
    #[serde(default)]
    persons: BTreeMap<String, String>,
    max_json_bytes: Option<usize>,
    max_blob_bytes: Option<usize>,
    max_frame_bytes: Option<usize>,
    max_one_time_prekeys: Option<usize>,
}

/// Runs the relay until Ctrl-C or SIGTERM.
pub fn run(args: RelayArgs) -> Result<(), CliError> {
    let (config, created) = configure(args)?;
    crate::runtime()?.block_on(async move {
        let relay = Relay::spawn(config).await.map_err(CliError::Listen)?;
        for line in created {
            crate::print_line(&line)?;
        }
        // Last, so a script that waits for it knows every line before it is there too.
        crate::print_line(&format!("PACERELLE_BASE_URL={}", relay.base_url()))?;
        tracing::info!(url = %relay.base_url(), "relay listening");
        stopped().await;
        relay.shutdown().await;
        Ok(())
    })
}

/// The relay's configuration, and `.env` lines for the identities it created.
fn configure(args: RelayArgs) -> Result<(RelayConfig, Vec<String>), CliError> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => RelayFile::default(),
    };
    let defaults = RelayConfig::default();
    let mut config = RelayConfig {
        listen: args.listen.or(file.listen).unwrap_or(defaults.listen),
        agents: file.agents,
        persons: file.persons,
        max_json_bytes: file.max_json_bytes.unwrap_or(defaults.max_json_bytes),
        max_blob_bytes: file.max_blob_bytes.unwrap_or(defaults.max_blob_bytes),
        max_frame_bytes: file.max_frame_bytes.unwrap_or(defaults.max_frame_bytes),
        max_one_time_prekeys: file.max_one_time_prekeys.unwrap_or(defaults.max_one_time_prekeys),
        ..defaults
    };
    if let Some(path) = &args.config {
        let empty = config.agents.iter().chain(&config.persons).any(|(id, token)| id.is_empty() || token.is_empty());
        if empty {
            return Err(CliError::ConfigFile { path: path.clone(), reason: "an id or a token is empty".into() });
        }
    }
    config.agents.extend(args.agents);
    config.persons.extend(args.persons);
    let mut created = Vec::new();
    if config.agents.is_empty() {
        let (id, token) = (format!("agent-{}", random_hex(4)), random_hex(24));
        created.push(format!("PACERELLE_AGENT_ID={id}"));
        created.push(format!("PACERELLE_AGENT_TOKEN={token}"));
        config.agents.insert(id, token);
    }
    if config.persons.is_empty() {
        let (id, token) = (format!("person-{}", random_hex(4)), random_hex(24));
        created.push(format!("PACERELLE_PERSON_ID={id}"));
        created.push(format!("PACERELLE_PERSON_TOKEN={token}"));
        config.persons.insert(id, token);
    }
    Ok((config, created))
}

fn read_file(path: &Path) -> Result<RelayFile, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        what: "cannot read the configuration file",
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|error| {
        // serde_json's own message may quote a value, and values here are tokens.
        let what = match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not valid JSON",
            _ => {
                "a field is unknown or has the wrong type (expected listen, agents, persons, max_json_bytes, \
                 max_blob_bytes, max_frame_bytes, max_one_time_prekeys)"
            }
        };
        let reason = format!("{what} at line {} column {}", error.line(), error.column());
        CliError::ConfigFile { path: path.to_owned(), reason }
    })
}

/// Waits for Ctrl-C, or SIGTERM on Unix (what `kill` and service managers send).
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "SIGTERM not handled");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: Option<&str>, agents: &[(&str, &str)], config: Option<PathBuf>) -> RelayArgs {
        RelayArgs {
            listen: listen.map(|address| address.parse().unwrap()),
            agents: agents.iter().map(|(id, token)| ((*id).to_owned(), (*token).to_owned())).collect(),
            persons: Vec::new(),
            config,
        }
    }

    fn file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("pacerelle-cli-relay-{name}-{}.json", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn identity_pairs() {
        assert_eq!(parse_identity("a=t=u"), Ok(("a".into(), "t=u".into())));
        assert!(parse_identity("a=").is_err() && parse_identity("=t").is_err() && parse_identity("at").is_err());
    }

    #[test]
    fn flags_and_file_combine_and_missing_identities_are_created() {
        let path = file(
            "combine",
            r#"{"listen": "127.0.0.1:9001", "agents": {"echo": "t1"}, "persons": {"alice": "t2"}, "max_blob_bytes": 10}"#,
        );
        let (config, created) = configure(args(None, &[("second", "t3")], Some(path.clone()))).unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!((config.agents["echo"].as_str(), config.agents["second"].as_str()), ("t1", "t3"));
        assert_eq!(config.persons["alice"], "t2");
        assert_eq!(config.max_blob_bytes, 10);
        assert!(created.is_empty());
        let (config, _) = configure(args(Some("127.0.0.1:0"), &[], Some(path.clone()))).unwrap();
        assert_eq!(config.listen.port(), 0);
        std::fs::remove_file(path).ok();

        let (config, created) = configure(args(None, &[], None)).unwrap();
        assert_eq!((config.agents.len(), config.persons.len()), (1, 1));
        let names: Vec<&str> = created.iter().map(|line| line.split('=').next().unwrap()).collect();
        assert_eq!(
            names,
            ["PACERELLE_AGENT_ID", "PACERELLE_AGENT_TOKEN", "PACERELLE_PERSON_ID", "PACERELLE_PERSON_TOKEN"]
        );
        assert_eq!(config.listen, RelayConfig::default().listen);
    }

    #[test]
    fn bad_files_are_named_without_their_values() {
        for (name, contents) in [
            ("syntax", "{\"agents\": "),
            ("unknown", r#"{"agent": {"a": "secret-token"}}"#),
            ("type", r#"{"agents": "secret-token"}"#),
            ("empty", r#"{"agents": {"a": ""}}"#),
        ] {
            let path = file(name, contents);
            let error = configure(args(None, &[], Some(path.clone()))).unwrap_err();
            assert!(matches!(error, CliError::ConfigFile { .. }), "{name}: {error:?}");
            assert_eq!(error.exit_code(), crate::exit::IO);
            assert!(!error.to_string().contains("secret-token"), "{error}");
            std::fs::remove_file(path).ok();
        }
        let missing = std::env::temp_dir().join("pacerelle-cli-relay-does-not-exist.json");
        let error = configure(args(None, &[], Some(missing))).unwrap_err();
        assert!(matches!(error, CliError::File { .. }), "{error:?}");
    }
}
