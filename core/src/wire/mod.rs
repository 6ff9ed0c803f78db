//! What crosses the relay: socket frames and HTTP bodies, as typed values.
//!
//! Parsing is strict where the official SDK is strict (routing fields of a message) and reports
//! everything else it cannot use as a precise [`FrameError`] instead of guessing. Encoding writes
//! exactly the fields the official SDK writes, in its order.
//!
//! # What the agent accepts beyond strict JSON
//! The agent's frames are read as the official SDK's Python reads them ([`python`]), so that
//! a frame it handles is handled here too, with the same ids, text and digest (the digest is
//! computed on the frame as Python holds it, so replays match). Each case is checked against
//! the official SDK's own code (`testvectors/vectors/inbound_frames.json`):
//!
//! | in the frame | the official SDK (and this one) |
//! | --- | --- |
//! | `NaN`, `Infinity`, `-Infinity` anywhere | accepted (`json.loads`); kept in the digest, `null` in [`InboundMsg::raw`] |
//! | integers beyond 64 bits | accepted, exact in the digest; over 4,300 digits Python raises: refused |
//! | a key given twice | the last value, in the first one's place |
//! | `from_device_id`, `to`, `reply_to_message_id` not strings | used when truthy, as Python's `str()` (`3` is `"3"`, `true` is `"True"`); `0`, `false`, `""`, `[]`, `{}` and `null` are absent |
//! | `IDENTITY_CHANGED` without `user_id`/`agent_id` | reported with an empty peer id, never refused |
//! | `payload_b64` absent | the empty text; `null` or a non-string is refused (Python raises) |
//! | `payload_b64` with characters outside base64, extra or missing-in-the-middle `=`, data after the padding, non-zero trailing bits | decoded as `base64.b64decode` without `validate` does ([`python::b64decode`]) |
//! | `encrypted` other than `true` | plaintext |
//! | `id`, `from`, `conversation_id` not non-empty strings | refused, as Python refuses them |
//! | nested deeper than [`python::MAX_DEPTH`] | refused ([`FrameError::Unsupported`]); Python raises past about 980 |
//! | a lone surrogate escape (`"\ud800"`) | Python accepts it; refused here (no UTF-8 form) |
//!
//! A `MSG` frame refused but named by [`agent::refused_msg_ids`] is acknowledged and reported
//! after its bounded deliveries, so none comes back forever.

pub mod agent;
pub mod http;
pub mod person;
pub mod python;

pub use agent::{AckRead, InboundFrame, InboundMsg, OutboundMsg};
pub use http::{HttpMethod, HttpRequest, HttpResponse, RequestId};

use serde_json::{Map, Value};

/// Why a socket frame could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is not JSON at all.
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    /// The frame is JSON but not an object.
    #[error("frame is JSON but not an object")]
    NotObject,
    /// The object has no string `type`, or one this side does not know.
    #[error("unknown frame type {0:?}")]
    UnknownType(Option<String>),
    /// The object's fields do not fit the frame's schema (a field of the wrong type).
    #[error("frame does not fit its schema: {0}")]
    Schema(String),
    /// JSON that Python's `json.loads` raises on beyond its syntax errors (nesting too deep, an
    /// integer too long), or that this SDK cannot hold (a lone surrogate).
    #[error("frame cannot be read: {0}")]
    Unsupported(&'static str),
    /// A required field is missing, empty or of the wrong type.
    #[error("field `{field}` is {problem}")]
    InvalidField {
        /// The field's name on the wire.
        field: &'static str,
        /// What is wrong with it.
        problem: FieldProblem,
    },
}

impl FrameError {
    /// Whether the official SDK silently drops frames like this one (non-JSON, non-objects,
    /// unknown types) rather than treating them as an error. Runtimes log these at debug level.
    pub fn is_ignorable(&self) -> bool {
        matches!(self, FrameError::NotJson(_) | FrameError::NotObject | FrameError::UnknownType(_))
    }
}

/// What is wrong with a field, in [`FrameError::InvalidField`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldProblem {
    /// Absent or `null` where a value is required.
    Missing,
    /// Present but an empty string where a non-empty one is required.
    Empty,
    /// Present with the wrong JSON type.
    WrongType,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldProblem::Missing => "missing",
            FieldProblem::Empty => "empty",
            FieldProblem::WrongType => "of the wrong type",
        })
    }
}

/// Parses a text frame into a JSON object and its `type`, the first step on both sides.
pub(crate) fn parse_object(text: &str) -> Result<(Map<String, Value>, Option<String>), FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|error| FrameError::NotJson(error.to_string()))?;
    let Value::Object(object) = value else {
        return Err(FrameError::NotObject);
    };
    let kind = object.get("type").and_then(Value::as_str).map(str::to_owned);
    Ok((object, kind))
}

/// A required, non-empty string field.
pub(crate) fn required_str(object: &Map<String, Value>, field: &'static str) -> Result<String, FrameError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(FrameError::InvalidField { field, problem: FieldProblem::Missing }),
        Some(Value::String(text)) if text.is_empty() => {
            Err(FrameError::InvalidField { field, problem: FieldProblem::Empty })
        }
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(FrameError::InvalidField { field, problem: FieldProblem::WrongType }),
    }
}

/// An optional string field: absent, `null` and `""` all mean "not given".
pub(crate) fn optional_str(object: &Map<String, Value>, field: &'static str) -> Result<Option<String>, FrameError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(FrameError::InvalidField { field, problem: FieldProblem::WrongType }),
    }
}
