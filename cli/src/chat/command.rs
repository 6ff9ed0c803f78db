//! What a line typed (or piped) into `pacerelle chat` asks for: a message, or a `/command`.
//!
//! A line not starting with `/` is a message. `//text` sends `/text` (agents often take slash
//! commands of their own); any other `/word` is a command, and an unknown one is an error rather
//! than a message, so a typo never reaches the agent.

use serde_json::Value;

/// The commands, for `/help`.
pub(crate) const HELP: &str = "\
commands:
  <text>                    send <text> to the agent (//text sends /text)
  /answer <widget> <json>   answer a widget: /answer #1 true, /answer w-7 {\"age\": 3}
  /cancel <widget>          dismiss a widget
  /send-file <path>         send a file
  /fetch <n> <path>         write attachment <n> (as numbered in `attachment <n> ...`) to <path>
  /wait <text>              in a script: wait until a message from the agent contains <text>
  /help                     this list
  /quit                     leave
<widget> is a widget's id, or #n for the n-th widget shown.";

/// Which widget a command means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WidgetRef {
    /// The n-th widget shown, from 1.
    Nth(usize),
    /// A widget's own id.
    Id(String),
}

impl std::fmt::Display for WidgetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WidgetRef::Nth(n) => write!(f, "#{n}"),
            WidgetRef::Id(id) => write!(f, "{id}"),
        }
    }
}

/// One line's meaning.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Line {
    /// Nothing (a blank line).
    Empty,
    /// Send this text.
    Text(String),
    /// Answer a widget.
    Answer {
        /// The widget.
        widget: WidgetRef,
        /// The answer.
        value: Value,
    },
    /// Dismiss a widget.
    Cancel {
        /// The widget.
        widget: WidgetRef,
    },
    /// Send a file.
    SendFile {
        /// Its path.
        path: String,
    },
    /// Write an attachment to a file.
    Fetch {
        /// Its number, from 1.
        attachment: usize,
        /// Where.
        path: String,
    },
    /// Wait for a message from the agent containing this text (each message satisfies one
    /// wait, in order).
    Wait {
        /// What to look for.
        text: String,
    },
    /// Show the commands.
    Help,
    /// Leave.
    Quit,
}

/// Reads one line.
pub(crate) fn parse(line: &str) -> Result<Line, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(Line::Empty);
    }
    if let Some(text) = line.strip_prefix("//") {
        return Ok(Line::Text(format!("/{text}")));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Line::Text(line.to_owned()));
    };
    let (name, rest) = split_word(command);
    match name {
        "answer" => {
            let (widget, json) = split_word(rest);
            let widget = widget_ref(widget)?;
            if json.is_empty() {
                return Err("/answer needs a widget and a JSON value: /answer #1 true".into());
            }
            let value =
                serde_json::from_str(json).map_err(|error| format!("/answer: the value is not JSON ({error})"))?;
            Ok(Line::Answer { widget, value })
        }
        "cancel" => {
            let (widget, extra) = split_word(rest);
            if !extra.is_empty() {
                return Err("/cancel takes one widget".into());
            }
            Ok(Line::Cancel { widget: widget_ref(widget)? })
        }
        "send-file" if !rest.is_empty() => Ok(Line::SendFile { path: rest.to_owned() }),
        "send-file" => Err("/send-file needs a path".into()),
        "fetch" => {
            let (number, path) = split_word(rest);
            let attachment = number
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| "/fetch needs an attachment number (from 1) and a path".to_owned())?;
            if path.is_empty() {
                return Err("/fetch needs a path".into());
            }
            Ok(Line::Fetch { attachment, path: path.to_owned() })
        }
        "wait" if !rest.is_empty() => Ok(Line::Wait { text: rest.to_owned() }),
        "wait" => Err("/wait needs a text to wait for".into()),
        "help" => Ok(Line::Help),
        "quit" | "exit" => Ok(Line::Quit),
        other => Err(format!("unknown command /{other} (/help lists them; //{other} sends it as text)")),
    }
}

/// The first word, and the rest with its leading blanks removed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim()),
        None => (text, ""),
    }
}

fn widget_ref(word: &str) -> Result<WidgetRef, String> {
    if word.is_empty() {
        return Err("a widget is needed: its id, or #n for the n-th shown".into());
    }
    match word.strip_prefix('#') {
        Some(number) => number
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .map(WidgetRef::Nth)
            .ok_or_else(|| format!("{word} is not a widget number (#1, #2, ...)")),
        None => Ok(WidgetRef::Id(word.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_and_commands() {
        assert_eq!(parse("hello there"), Ok(Line::Text("hello there".into())));
        assert_eq!(parse("hello\r"), Ok(Line::Text("hello".into())));
        assert_eq!(parse("   "), Ok(Line::Empty));
        assert_eq!(parse("//confirm"), Ok(Line::Text("/confirm".into())));
        assert_eq!(parse("/answer #2 true"), Ok(Line::Answer { widget: WidgetRef::Nth(2), value: json!(true) }));
        assert_eq!(
            parse("/answer w-7  {\"age\": 3}"),
            Ok(Line::Answer { widget: WidgetRef::Id("w-7".into()), value: json!({"age": 3}) })
        );
        assert_eq!(parse("/cancel #1"), Ok(Line::Cancel { widget: WidgetRef::Nth(1) }));
        assert_eq!(parse("/send-file ./my file.txt"), Ok(Line::SendFile { path: "./my file.txt".into() }));
        assert_eq!(parse("/fetch 3 out/a b.pdf"), Ok(Line::Fetch { attachment: 3, path: "out/a b.pdf".into() }));
        assert_eq!(parse("/wait You answered true"), Ok(Line::Wait { text: "You answered true".into() }));
        assert_eq!(parse("/quit"), Ok(Line::Quit));
        assert_eq!(parse("/help"), Ok(Line::Help));
    }

    #[test]
    fn malformed_commands_are_refused_not_sent() {
        for bad in [
            "/answer",
            "/answer #1",
            "/answer #1 not-json",
            "/answer #0 true",
            "/answer #x true",
            "/cancel",
            "/cancel #1 more",
            "/send-file",
            "/fetch",
            "/fetch 0 out",
            "/fetch one out",
            "/fetch 1",
            "/wait",
            "/wait   ",
            "/confirm",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("/confirm").unwrap_err().contains("//confirm"));
    }
}
