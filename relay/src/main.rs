//! `pacerelle-relay`: the development relay on the command line.

use pacerelle_relay::{Relay, RelayConfig, parse_identity, random_hex};
use std::process::ExitCode;

const USAGE: &str = "\
usage: pacerelle-relay [--listen ADDR] [--agent ID=TOKEN]... [--person ID=TOKEN]...

A local Pacerelle relay for development (in memory, loopback by default).

  --listen ADDR        where to listen (default 127.0.0.1:8080)
  --agent ID=TOKEN     an agent that may connect (repeatable); with none, one is created
  --person ID=TOKEN    a person that may connect (repeatable); with none, one is created
  -h, --help           this help

Created identities are printed as .env lines on stdout. RUST_LOG sets the log level.";

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let config = match parse(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("pacerelle-relay: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pacerelle-relay: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let relay = match Relay::spawn(config).await {
            Ok(relay) => relay,
            Err(error) => {
                eprintln!("pacerelle-relay: {error}");
                return ExitCode::FAILURE;
            }
        };
        println!("PACERELLE_BASE_URL={}", relay.base_url());
        let _ = tokio::signal::ctrl_c().await;
        relay.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// The configuration the arguments ask for; `None` for `--help`. Creates and prints an agent and
/// a person when none is given.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<RelayConfig>, String> {
    let mut config = RelayConfig::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let address = value("--listen")?;
                config.listen = address.parse().map_err(|_| format!("invalid address {address:?}"))?;
            }
            "--agent" | "--person" => {
                let (id, token) = parse_identity(&value(&arg)?).map_err(|error| format!("{arg}: {error}"))?;
                let map = if arg == "--agent" { &mut config.agents } else { &mut config.persons };
                map.insert(id, token);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if config.agents.is_empty() {
        let (id, token) = (format!("agent-{}", random_hex(4)), random_hex(24));
        println!("PACERELLE_AGENT_ID={id}\nPACERELLE_AGENT_TOKEN={token}");
        config.agents.insert(id, token);
    }
    if config.persons.is_empty() {
        let (id, token) = (format!("person-{}", random_hex(4)), random_hex(24));
        println!("PACERELLE_PERSON_ID={id}\nPACERELLE_PERSON_TOKEN={token}");
        config.persons.insert(id, token);
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn arguments() {
        let config =
            parse(args(&["--listen", "127.0.0.1:9000", "--agent", "a=t", "--person", "p=u"])).unwrap().unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.agents["a"], "t");
        assert_eq!(config.persons["p"], "u");
        assert!(parse(args(&["--help"])).unwrap().is_none());
        assert!(parse(args(&["--agent", "no-token"])).is_err());
        assert!(parse(args(&["--listen"])).is_err());
        assert!(parse(args(&["--bogus"])).is_err());
        let created = parse(args(&[])).unwrap().unwrap();
        assert_eq!((created.agents.len(), created.persons.len()), (1, 1));
    }
}
