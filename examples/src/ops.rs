//! The operations agent: runs a command from a fixed allowlist on this machine once the person
//! grants permission, shows its progress, and sends the output back as an encrypted file.
//!
//! A person names a command (`uptime`, `disk`, `kernel`, `date`, or `help`); the agent asks for
//! permission with the SDK's [`PermissionPolicy`] (once, or for the session), and on a grant runs
//! the program with the arguments the allowlist fixes. Nothing the person writes ever reaches a
//! command line: their text only picks an entry. A refusal is respected, a name not on the list
//! is refused, and a session grant lets the same command run again without asking.

use pacerelle::permissions::{
    AuthorizationStatus, Decision, GrantState, PermissionAction, PermissionContext, PermissionPolicy,
    PermissionRequest, PermissionSession, SessionError,
};
use pacerelle::tokio::AgentHandle;
use pacerelle::widget::{PermissionScope, Progress, WidgetPatch};
use pacerelle::{AgentMessage, HandlerResult, OutgoingFile, now, os_rng};
use serde_json::{Map, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A command the agent may run: the name a person uses, and the exact program and arguments.
#[derive(Debug)]
pub struct AllowedCommand {
    /// What the person types.
    pub name: &'static str,
    /// The program, looked up on `PATH` (no shell).
    pub program: &'static str,
    /// Its arguments, fixed here.
    pub args: &'static [&'static str],
    /// What it tells the person, for the permission request and `help`.
    pub about: &'static str,
}

/// The commands this agent runs, and nothing else. All are read-only and present on Debian.
pub const ALLOWLIST: &[AllowedCommand] = &[
    AllowedCommand {
        name: "uptime",
        program: "uptime",
        args: &[],
        about: "how long the host has been up, and its load",
    },
    AllowedCommand { name: "disk", program: "df", args: &["-h"], about: "free space on every mounted file system" },
    AllowedCommand { name: "kernel", program: "uname", args: &["-a"], about: "the kernel's name, version and machine" },
    AllowedCommand { name: "date", program: "date", args: &["-u"], about: "the host's clock, in UTC" },
];

/// How long a person has to answer a permission request.
const ANSWER_WITHIN: Duration = Duration::from_secs(5 * 60);

impl AllowedCommand {
    /// The entry a person's message names (`uptime`, or `run uptime`), if any.
    pub fn named(text: &str) -> Option<&'static AllowedCommand> {
        let name = text.trim();
        let name = name.strip_prefix("run ").unwrap_or(name).trim();
        ALLOWLIST.iter().find(|command| command.name.eq_ignore_ascii_case(name))
    }

    /// The command line as a person reads it (`df -h`).
    pub fn command_line(&self) -> String {
        std::iter::once(self.program).chain(self.args.iter().copied()).collect::<Vec<_>>().join(" ")
    }

    /// What a grant covers: running this program with exactly these arguments, so a grant for
    /// one command can never admit another.
    fn action(&self) -> PermissionAction {
        PermissionAction::new("run", self.name).with_parameters(json!({"argv": self.argv()}))
    }

    fn argv(&self) -> Vec<&'static str> {
        std::iter::once(self.program).chain(self.args.iter().copied()).collect()
    }

    /// Runs the command without a shell, its output captured.
    fn run(&self) -> std::io::Result<std::process::Output> {
        std::process::Command::new(self.program).args(self.args).stdin(std::process::Stdio::null()).output()
    }
}

/// The operations agent's state: one permission session, and the requests awaiting an answer.
pub struct OpsAgent {
    policy: Mutex<PermissionPolicy>,
    /// Permission requests (by widget id) and the command each asks to run.
    pending: Mutex<HashMap<String, &'static AllowedCommand>>,
}

impl OpsAgent {
    /// An agent whose grants last at most `session_length` from now, under `label`.
    pub fn new(label: &str, session_length: Duration) -> Result<Arc<Self>, SessionError> {
        let start = now();
        let session =
            PermissionSession::new(format!("ops-{}", start.as_millis()), label, start.saturating_add(session_length));
        Ok(Arc::new(OpsAgent { policy: Mutex::new(PermissionPolicy::new(session, start)?), pending: Mutex::default() }))
    }

    /// Handles one message: a command, `help`, or an answer to a permission request.
    pub async fn handle(&self, message: AgentMessage, agent: AgentHandle) -> HandlerResult {
        if message.widget_response.is_some() {
            return self.on_answer(&message, &agent).await;
        }
        let text = message.text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("help") {
            agent.reply(&message, help()).await?;
            return Ok(());
        }
        let Some(command) = AllowedCommand::named(text) else {
            let refusal = format!("I don't run \"{}\": it is not on my allowlist.\n{}", quoted(text), help());
            agent.reply(&message, refusal).await?;
            return Ok(());
        };
        match self.session_grant_for(&message, command)? {
            Some(grant_id) => self.run(&message, &agent, command, &grant_id, Shown::Already).await,
            None => self.ask(&message, &agent, command).await,
        }
    }

    /// Sends the permission request for `command`.
    async fn ask(
        &self,
        message: &AgentMessage,
        agent: &AgentHandle,
        command: &'static AllowedCommand,
    ) -> HandlerResult {
        let request = PermissionRequest::new(
            &message.conversation_id,
            &message.from,
            command.action(),
            format!("Run `{}` on this host?", command.command_line()),
            now().saturating_add(ANSWER_WITHIN),
        )
        .body(format!("It shows {}. The output comes back to you as an encrypted file.", command.about))
        .scopes([PermissionScope::Once, PermissionScope::Session]);
        let widget = {
            let mut policy = self.policy()?;
            let at = now();
            // Questions nobody answered in time are dropped, so the map holds live ones only.
            self.pending()?.retain(|id, _| policy.status(at, id) == Ok(AuthorizationStatus::Requested));
            policy.create_request(at, request, &mut *os_rng())?
        };
        self.pending()?.insert(widget.id().to_owned(), command);
        agent.send_text(&message.conversation_id, &message.from, widget.text()).await?;
        Ok(())
    }

    /// Judges an answer to a permission request, and runs the command on a grant.
    async fn on_answer(&self, message: &AgentMessage, agent: &AgentHandle) -> HandlerResult {
        let decision = self.policy()?.receive_response(now(), message);
        match decision {
            Ok(Decision::Granted(grant)) => {
                // Only questions asked here are pending. A handler run again after a failure
                // finds its answer a duplicate instead (below): a grant starts one run at most.
                let Some(command) = self.pending()?.remove(&grant.request_id) else {
                    return Ok(());
                };
                self.run(message, agent, command, &grant.id, Shown::NotYet).await
            }
            Ok(Decision::Denied { request_id }) => {
                let command = self.pending()?.remove(&request_id);
                self.show_status(message, agent, &request_id).await?;
                let what = command.map_or_else(|| "it".to_owned(), |command| format!("`{}`", command.command_line()));
                agent.reply(message, format!("Understood: I won't run {what}.")).await?;
                Ok(())
            }
            Ok(Decision::Revoked { request_id }) => {
                self.show_status(message, agent, &request_id).await?;
                agent.reply(message, "Permission withdrawn: I'll ask again next time.").await?;
                Ok(())
            }
            // An answer seen before, or to a widget that is not a permission request of ours.
            Ok(Decision::Duplicate { .. } | Decision::Unrelated) => Ok(()),
            Err(rejection) => {
                agent.reply(message, format!("I can't accept that answer: {rejection}.")).await?;
                Ok(())
            }
        }
    }

    /// A live session grant of this person, in this conversation, that covers `command`: then
    /// the command runs without asking again.
    fn session_grant_for(
        &self,
        message: &AgentMessage,
        command: &'static AllowedCommand,
    ) -> Result<Option<String>, &'static str> {
        let mut policy = self.policy()?;
        let context = self.context(&policy, message, command);
        let at = now();
        let session_grants: Vec<String> = policy
            .grants(at)
            .into_iter()
            .filter(|grant| grant.scope == PermissionScope::Session && grant.state == GrantState::Active)
            .map(|grant| grant.id)
            .collect();
        // Authorizing under a session grant uses nothing up, so it is the policy's own check of
        // who, where and what the grant covers; `run` makes it again before starting.
        Ok(session_grants.into_iter().find(|grant_id| policy.authorize(at, grant_id, &context).is_ok()))
    }

    /// Runs `command` under grant `grant_id`: the policy checks the grant (and uses up a `once`
    /// grant) before anything starts; the person sees a progress widget, then the output.
    async fn run(
        &self,
        message: &AgentMessage,
        agent: &AgentHandle,
        command: &'static AllowedCommand,
        grant_id: &str,
        status: Shown,
    ) -> HandlerResult {
        let (conversation, person) = (&message.conversation_id, &message.from);
        let authorized = {
            let mut policy = self.policy()?;
            let context = self.context(&policy, message, command);
            policy.authorize(now(), grant_id, &context)
        };
        if let Err(not_authorized) = authorized {
            agent.reply(message, format!("Not running `{}`: {not_authorized}.", command.command_line())).await?;
            return Ok(());
        }
        if status == Shown::NotYet {
            self.show_status(message, agent, grant_id).await?;
        }

        let title = format!("Running `{}`", command.command_line());
        let progress = agent.send_widget(conversation, person, Progress::new(&title, 0).option("max", 100)).await?;
        let started = Instant::now();
        // The command blocks; it runs off the async workers so the agent keeps serving others.
        let output = tokio::task::spawn_blocking(|| command.run()).await?;
        let took = started.elapsed();

        let output = match output {
            Ok(output) => output,
            Err(error) => {
                let failed = progress_spec(format!("`{}` could not start", command.command_line()), 100);
                agent.send_widget_update(conversation, person, WidgetPatch::new(&progress).spec(failed)).await?;
                agent.reply(message, format!("`{}` could not start: {error}.", command.command_line())).await?;
                return Ok(());
            }
        };
        tracing::info!(
            command = command.name,
            person = %person,
            conversation = %conversation,
            exit_code = ?output.status.code(),
            "ran an allowlisted command"
        );
        let done = progress_spec(format!("`{}` finished", command.command_line()), 100);
        agent.send_widget_update(conversation, person, WidgetPatch::new(&progress).spec(done)).await?;

        let mut report = output.stdout;
        if !output.stderr.is_empty() {
            report.extend_from_slice(b"\n--- stderr ---\n");
            report.extend_from_slice(&output.stderr);
        }
        let status = match output.status.code() {
            Some(code) => format!("exited with {code}"),
            None => "was stopped by a signal".to_owned(),
        };
        let lines = String::from_utf8_lossy(&report).lines().count();
        let summary = format!(
            "`{}` {status} after {} ms: {lines} line{} of output, attached.",
            command.command_line(),
            took.as_millis(),
            if lines == 1 { "" } else { "s" },
        );
        let file = OutgoingFile::new(conversation, person, report, format!("{}.txt", command.name), "text/plain")
            .text(summary)
            .reply_to(&message.id);
        agent.send_file(file).await?;
        Ok(())
    }

    /// Shows the person where permission request `request_id` stands (granted, used, denied).
    async fn show_status(&self, message: &AgentMessage, agent: &AgentHandle, request_id: &str) -> HandlerResult {
        let update = self.policy()?.create_widget_update(now(), request_id, &mut *os_rng())?;
        agent.send_text(&message.conversation_id, &message.from, update.text()).await?;
        Ok(())
    }

    fn context(
        &self,
        policy: &PermissionPolicy,
        message: &AgentMessage,
        command: &AllowedCommand,
    ) -> PermissionContext {
        PermissionContext::new(&message.from, &message.conversation_id, &policy.session().id, command.action())
    }

    // The locks are never held across an `.await`: each use takes and drops them.
    fn policy(&self) -> Result<MutexGuard<'_, PermissionPolicy>, &'static str> {
        self.policy.lock().map_err(|_| "the permission policy's lock is poisoned")
    }

    fn pending(&self) -> Result<MutexGuard<'_, HashMap<String, &'static AllowedCommand>>, &'static str> {
        self.pending.lock().map_err(|_| "the pending requests' lock is poisoned")
    }
}

/// Whether the person's permission widget already shows where their grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// A session grant used again: the widget already says `granted`.
    Already,
    /// A grant just given: the widget still says `requested`.
    NotYet,
}

/// What the agent can do, for `help` and refusals.
pub fn help() -> String {
    let mut text = String::from("I can run, with your permission:");
    for command in ALLOWLIST {
        text.push_str(&format!("\n- {} (`{}`): {}", command.name, command.command_line(), command.about));
    }
    text
}

/// A person's text to quote back, cut short if long: they know what they wrote.
fn quoted(text: &str) -> String {
    const LONGEST: usize = 60;
    match text.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn progress_spec(title: String, value: u8) -> Map<String, serde_json::Value> {
    let mut spec = Map::new();
    spec.insert("title".into(), json!(title));
    spec.insert("value".into(), json!(value));
    spec.insert("max".into(), json!(100));
    spec
}
