//! `pacerelle connect`: Agent Connect from a terminal. It starts an installation request, prints
//! the address where the owner approves it, reads back the address the owner's browser was sent
//! to (or the bare code), exchanges the code with the PKCE verifier it kept, asks for a runtime
//! token, and writes both tokens to a file only its user can read. Tokens never reach stdout,
//! stderr or the logs.

use crate::CliError;
use pacerelle_core::connect::{ConnectApp, ConnectError, InstallationToken, RuntimeToken};
use pacerelle_runtime_support::connect::{AgentConnect, AgentConnectError};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

/// The name of the file the tokens are written to, in the agent's folder of the store root.
pub const CREDENTIALS_FILE: &str = "connect.json";

/// `pacerelle connect`'s options.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The server: Pacerelle's API, or a development relay.
    #[arg(long, value_name = "URL", env = "PACERELLE_BASE_URL", default_value = "https://api.pacerelle.com")]
    pub base_url: String,
    /// The app's connect key.
    #[arg(long, value_name = "KEY", env = "PACERELLE_CONNECT_KEY", hide_env_values = true)]
    pub connect_key: String,
    /// The app's client id, registered with its connect key.
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// The redirect URI registered for the client.
    #[arg(long, value_name = "URI")]
    pub redirect_uri: String,
    /// The agent's display name, shown to the owner.
    #[arg(long, value_name = "NAME")]
    pub agent_name: String,
    /// The agent's description, shown to the owner.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
    /// The store root; the tokens go to `<root>/<agent id>/connect.json`. Default: ~/.myagents.
    #[arg(long, value_name = "PATH", env = "PACERELLE_STORE_ROOT")]
    pub store_root: Option<PathBuf>,
}

/// Runs the flow; the approval address goes to stdout, the prompt to stderr, the answer is read
/// from stdin.
pub fn run(args: ConnectArgs) -> Result<(), CliError> {
    let root = match &args.store_root {
        Some(root) => root.clone(),
        None => pacerelle_runtime_support::durable::default_store_root()
            .ok_or_else(|| CliError::Usage("no --store-root given and no home folder for ~/.myagents".into()))?,
    };
    let connect = AgentConnect::new(&args.base_url);
    let app = ConnectApp::new(&args.client_id, &args.redirect_uri, &args.agent_name).description(&args.description);
    let failed = |error| connect_error(&args.base_url, error);
    let start = connect.begin(&args.connect_key, &app).map_err(failed)?;
    crate::print_line(&format!("authorization-url: {}", start.authorization_url))?;
    eprintln!(
        "Open the address above, approve the agent, then paste here the address you were sent back to \
         (or the code alone). The request lapses in {} s.",
        start.expires_in
    );

    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(CliError::Stdin)?;
    let answer = read_answer(line.trim())?;
    match &answer.state {
        Some(state) => start.check_state(state).map_err(failed_connect)?,
        None => tracing::info!("a bare code was pasted: its state cannot be checked"),
    }
    let installation = connect.exchange_code(&start.exchange(&app, &answer.code)).map_err(failed)?;
    let runtime = connect.request_runtime_token(installation.installation_token()).map_err(failed)?;
    let path = write_credentials(&root, &args.base_url, &installation, &runtime)?;
    crate::print_line(&format!("agent-id: {}", runtime.agent_id))?;
    crate::print_line(&format!("credentials: {}", path.display()))?;
    Ok(())
}

/// What the owner came back with.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    code: String,
    state: Option<String>,
}

/// Reads the pasted line: the redirect address (`...?code=...&state=...`, or `?error=...` when
/// the owner refused), or a bare code.
fn read_answer(line: &str) -> Result<Answer, CliError> {
    if line.is_empty() {
        return Err(CliError::Usage("no code was given".into()));
    }
    let Some((_, query)) = line.split_once('?') else {
        if line.contains(['&', '=', ' ', '/']) {
            return Err(CliError::Usage("neither a redirect address with a code nor a bare code".into()));
        }
        return Ok(Answer { code: line.to_owned(), state: None });
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut code = None;
    let mut state = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value =
            form_decode(value).ok_or_else(|| CliError::Usage(format!("the address's `{name}` is malformed")))?;
        match name {
            "code" => code = Some(value),
            "state" => state = Some(value),
            "error" => {
                return Err(CliError::Refused { what: "the installation", status: 403, reason: value });
            }
            _ => {}
        }
    }
    let code = code.filter(|code| !code.is_empty()).ok_or_else(|| CliError::Usage("the address has no code".into()))?;
    Ok(Answer { code, state })
}

/// Decodes one `application/x-www-form-urlencoded` value; `None` when a `%` escape is broken
/// or the bytes are not UTF-8.
fn form_decode(value: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut input = value.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = (input.next()? as char).to_digit(16)?;
                let low = (input.next()? as char).to_digit(16)?;
                bytes.push((high * 16 + low) as u8);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

/// Writes the tokens to `<root>/<agent>/connect.json`, readable by its owner only, replacing
/// any earlier file at once (written beside it, then renamed).
fn write_credentials(
    root: &Path,
    base_url: &str,
    installation: &InstallationToken,
    runtime: &RuntimeToken,
) -> Result<PathBuf, CliError> {
    if runtime.agent_id.is_empty() || runtime.agent_id.contains(['/', '\\']) || runtime.agent_id.starts_with('.') {
        return Err(CliError::Usage("the server named an agent id that cannot be a folder name".into()));
    }
    let folder = root.join(&runtime.agent_id);
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| CliError::File { what, path, source }
    };
    crate::create_private_folder(&folder).map_err(io("cannot create", &folder))?;
    let credentials = serde_json::json!({
        "base_url": base_url,
        "agent_id": runtime.agent_id,
        "owner_id": runtime.owner_id,
        "conversation_id": runtime.conversation_id,
        "installation_token": installation.installation_token(),
        "agent_token": runtime.agent_token(),
        "agent_token_expires_in": runtime.expires_in,
    });
    let text = zeroize::Zeroizing::new(credentials.to_string());
    let path = folder.join(CREDENTIALS_FILE);
    let partial = folder.join(format!(".{CREDENTIALS_FILE}.partial"));
    write_private(&partial, text.as_bytes()).map_err(io("cannot write", &partial))?;
    std::fs::rename(&partial, &path).map_err(io("cannot write", &path))?;
    Ok(path)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // An existing file keeps its mode on open: narrow it too.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn connect_error(base_url: &str, error: AgentConnectError) -> CliError {
    match error {
        AgentConnectError::Transport { reason, .. } => CliError::Unreachable { url: base_url.to_owned(), reason },
        AgentConnectError::Connect(error) => failed_connect(error),
    }
}

fn failed_connect(error: ConnectError) -> CliError {
    match error {
        ConnectError::Refused { status: status @ (401 | 403), reason, .. } => {
            CliError::Unauthorized { status, reason: reason.unwrap_or_default() }
        }
        ConnectError::Refused { status, reason, .. } => {
            CliError::Refused { what: "the Agent Connect request", status, reason: reason.unwrap_or_default() }
        }
        other => CliError::Connect(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_addresses_and_bare_codes_are_read() {
        let answer = read_answer("https://app.example/cb?code=abc%2Bd+e&state=s%C3%A9").unwrap();
        assert_eq!(answer, Answer { code: "abc+d e".into(), state: Some("sé".into()) });
        assert_eq!(read_answer("c0de-42").unwrap(), Answer { code: "c0de-42".into(), state: None });
        let refused = read_answer("https://app.example/cb?error=access_denied&state=s").unwrap_err();
        assert!(matches!(refused, CliError::Refused { .. }), "{refused:?}");
        for bad in ["", "https://app.example/cb?state=s", "https://app.example/cb?code=%zz", "a b"] {
            assert!(matches!(read_answer(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
    }
}
