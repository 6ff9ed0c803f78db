//! Widgets: the seven standard kinds an agent shows a person, their updates, and the answers.
//!
//! Each kind has its own builder, so an option that only some kinds take (such as
//! [`ResponseMode`], for confirm and choice) can only be set where it is valid. Payloads are
//! written exactly as the official SDK writes them: same key order, empty optional strings and
//! lists left out.
//!
//! ```
//! use pacerelle_core::widget::{Confirm, Widget, ResponseMode};
//! let widget: Widget = Confirm::new("Deploy to production?")
//!     .body("This restarts the service.")
//!     .danger(true)
//!     .labels("Deploy", "Cancel")
//!     .response_mode(ResponseMode::Collective)
//!     .id("w-1")
//!     .into();
//! let (id, payload) = widget.encode(|| unreachable!("the id is given"));
//! assert_eq!(id, "w-1");
//! assert!(payload.starts_with(r#"{"type": "widget.standard", "id": "w-1", "v": 1, "kind": "confirm""#));
//! ```

use crate::pyjson;
use serde_json::{Map, Number, Value, json};

/// The seven standard widget kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WidgetKind {
    /// Yes or no.
    Confirm,
    /// Pick among options.
    Choice,
    /// Grant a permission once or for the session.
    Permission,
    /// Fill in fields.
    Form,
    /// A progress bar the agent updates.
    Progress,
    /// Pick files to send.
    FilePicker,
    /// Pick a date and/or time.
    DateTime,
}

impl WidgetKind {
    /// The kind's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WidgetKind::Confirm => "confirm",
            WidgetKind::Choice => "choice",
            WidgetKind::Permission => "permission",
            WidgetKind::Form => "form",
            WidgetKind::Progress => "progress",
            WidgetKind::FilePicker => "file-picker",
            WidgetKind::DateTime => "datetime",
        }
    }

    /// The kind named `name` on the wire.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "confirm" => WidgetKind::Confirm,
            "choice" => WidgetKind::Choice,
            "permission" => WidgetKind::Permission,
            "form" => WidgetKind::Form,
            "progress" => WidgetKind::Progress,
            "file-picker" => WidgetKind::FilePicker,
            "datetime" => WidgetKind::DateTime,
            _ => return None,
        })
    }
}

/// Whether each person in a group answers for themselves or one answer stands for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// Every member answers.
    Individual,
    /// The first answer counts for the group.
    Collective,
}

impl ResponseMode {
    /// The mode's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Individual => "individual",
            ResponseMode::Collective => "collective",
        }
    }

    /// The mode named `name` on the wire; no other names exist.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "individual" => Some(ResponseMode::Individual),
            "collective" => Some(ResponseMode::Collective),
            _ => None,
        }
    }
}

/// How long a permission holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionScope {
    /// This once.
    Once,
    /// For the session.
    Session,
}

impl PermissionScope {
    /// The scope's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionScope::Once => "once",
            PermissionScope::Session => "session",
        }
    }
}

/// Any standard widget, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Widget {
    kind: WidgetKind,
    spec: Map<String, Value>,
    id: Option<String>,
    expires_at: Option<String>,
    response_mode: Option<ResponseMode>,
}

impl Widget {
    /// Its kind.
    pub fn kind(&self) -> WidgetKind {
        self.kind
    }

    /// Its `spec` object.
    pub fn spec(&self) -> &Map<String, Value> {
        &self.spec
    }

    /// The same widget with this id instead of a fresh UUID.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The same widget expiring at `at` (an RFC 3339 time; left out when empty).
    pub fn with_expires_at(mut self, at: impl Into<String>) -> Self {
        self.expires_at = Some(at.into());
        self
    }

    /// The payload text and the widget's id: the one given, or `fresh_id()`.
    pub fn encode(self, fresh_id: impl FnOnce() -> String) -> (String, String) {
        let id = self.id.filter(|id| !id.is_empty()).unwrap_or_else(fresh_id);
        let mut payload = Map::new();
        payload.insert("type".into(), json!("widget.standard"));
        payload.insert("id".into(), json!(id));
        payload.insert("v".into(), json!(1));
        payload.insert("kind".into(), json!(self.kind.as_str()));
        payload.insert("spec".into(), Value::Object(self.spec));
        if let Some(expires_at) = self.expires_at.filter(|at| !at.is_empty()) {
            payload.insert("expires_at".into(), json!(expires_at));
        }
        if let Some(mode) = self.response_mode {
            payload.insert("response_mode".into(), json!(mode.as_str()));
        }
        (id, pyjson::dumps(&Value::Object(payload), pyjson::Style::DEFAULT))
    }
}

/// Builder methods every kind shares.
macro_rules! common_options {
    ($builder:ident) => {
        impl $builder {
            /// Use this id instead of a fresh UUID (to update the widget later by a known id).
            pub fn id(mut self, id: impl Into<String>) -> Self {
                self.widget = self.widget.with_id(id);
                self
            }

            /// When the widget stops accepting answers (an RFC 3339 time).
            pub fn expires_at(mut self, at: impl Into<String>) -> Self {
                self.widget = self.widget.with_expires_at(at);
                self
            }
        }

        impl From<$builder> for Widget {
            fn from(builder: $builder) -> Widget {
                builder.widget
            }
        }
    };
}

/// Builder methods for kinds that take free extra `spec` keys.
macro_rules! extra_options {
    ($builder:ident, $method:ident) => {
        impl $builder {
            /// Adds a free `spec` key (a later key of the same name replaces the value in place).
            pub fn $method(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
                self.widget.spec.insert(key.into(), value.into());
                self
            }
        }
    };
}

/// Builder methods for the kinds that take a [`ResponseMode`].
macro_rules! response_mode_option {
    ($builder:ident) => {
        impl $builder {
            /// How a group answers.
            pub fn response_mode(mut self, mode: ResponseMode) -> Self {
                self.widget.response_mode = Some(mode);
                self
            }
        }
    };
}

fn new_widget(kind: WidgetKind, title: String) -> Widget {
    let mut spec = Map::new();
    spec.insert("title".into(), json!(title));
    Widget { kind, spec, id: None, expires_at: None, response_mode: None }
}

fn set_text(spec: &mut Map<String, Value>, key: &str, text: String) {
    // The official SDK leaves empty optional strings out instead of sending them empty.
    if text.is_empty() {
        spec.remove(key);
    } else {
        spec.insert(key.into(), json!(text));
    }
}

/// A yes/no question.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    widget: Widget,
}

impl Confirm {
    /// A confirm widget asking `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Confirm { widget: new_widget(WidgetKind::Confirm, title.into()) }
    }

    /// Explanatory text.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        set_text(&mut self.widget.spec, "body", body.into());
        self
    }

    /// Shows the action as dangerous.
    pub fn danger(mut self, danger: bool) -> Self {
        self.widget.spec.insert("danger".into(), json!(danger));
        self
    }

    /// Button labels.
    pub fn labels(mut self, yes: impl Into<String>, no: impl Into<String>) -> Self {
        self.widget.spec.insert("labels".into(), json!({"yes": yes.into(), "no": no.into()}));
        self
    }
}

common_options!(Confirm);
response_mode_option!(Confirm);

/// One option of a [`Choice`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceOption {
    entry: Map<String, Value>,
}

impl ChoiceOption {
    /// An option with its id (the answer's value) and label.
    pub fn new(id: impl Into<String>, label: impl Into<String>) -> Self {
        let mut entry = Map::new();
        entry.insert("id".into(), json!(id.into()));
        entry.insert("label".into(), json!(label.into()));
        ChoiceOption { entry }
    }

    /// Adds a free key to the option (e.g. `description`).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.entry.insert(key.into(), value.into());
        self
    }
}

/// Pick one (or, with `multi`, several) of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    widget: Widget,
}

impl Choice {
    /// A choice among `options`.
    pub fn new(title: impl Into<String>, options: impl IntoIterator<Item = ChoiceOption>) -> Self {
        let mut widget = new_widget(WidgetKind::Choice, title.into());
        let options: Vec<Value> = options.into_iter().map(|option| Value::Object(option.entry)).collect();
        widget.spec.insert("options".into(), Value::Array(options));
        Choice { widget }
    }
}

common_options!(Choice);
response_mode_option!(Choice);
extra_options!(Choice, extra);

/// Ask for a permission.
#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    widget: Widget,
}

impl Permission {
    /// A permission request titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Permission { widget: new_widget(WidgetKind::Permission, title.into()) }
    }

    /// Explanatory text.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        set_text(&mut self.widget.spec, "body", body.into());
        self
    }

    /// The scopes the person may grant (left out when empty).
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = PermissionScope>) -> Self {
        let scopes: Vec<Value> = scopes.into_iter().map(|scope| json!(scope.as_str())).collect();
        if scopes.is_empty() {
            self.widget.spec.remove("scopes");
        } else {
            self.widget.spec.insert("scopes".into(), Value::Array(scopes));
        }
        self
    }
}

common_options!(Permission);

/// One field of a [`Form`].
#[derive(Debug, Clone, PartialEq)]
pub struct FormField {
    entry: Map<String, Value>,
}

impl FormField {
    /// A field with its name (the answer's key), label and input type (`text`, `number`, ...).
    pub fn new(name: impl Into<String>, label: impl Into<String>, field_type: impl Into<String>) -> Self {
        let mut entry = Map::new();
        entry.insert("name".into(), json!(name.into()));
        entry.insert("label".into(), json!(label.into()));
        entry.insert("type".into(), json!(field_type.into()));
        FormField { entry }
    }

    /// Whether the field must be filled.
    pub fn required(mut self, required: bool) -> Self {
        self.entry.insert("required".into(), json!(required));
        self
    }

    /// Adds a free key to the field (e.g. `placeholder`).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.entry.insert(key.into(), value.into());
        self
    }
}

/// A form to fill in.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    widget: Widget,
}

impl Form {
    /// A form with `fields`.
    pub fn new(title: impl Into<String>, fields: impl IntoIterator<Item = FormField>) -> Self {
        let mut widget = new_widget(WidgetKind::Form, title.into());
        let fields: Vec<Value> = fields.into_iter().map(|field| Value::Object(field.entry)).collect();
        widget.spec.insert("fields".into(), Value::Array(fields));
        Form { widget }
    }
}

common_options!(Form);
extra_options!(Form, option);

/// A progress value: an integer or a finite float, written as given (`50` stays `50`, `0.5`
/// stays `0.5`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressValue(Number);

macro_rules! progress_from_int {
    ($($int:ty),*) => {$(
        impl From<$int> for ProgressValue {
            fn from(value: $int) -> Self {
                ProgressValue(Number::from(value))
            }
        }
    )*};
}
progress_from_int!(u8, u16, u32, u64, i8, i16, i32, i64, usize);

impl From<f64> for ProgressValue {
    /// Non-finite values (which JSON cannot carry) become 0.
    fn from(value: f64) -> Self {
        ProgressValue(Number::from_f64(value).unwrap_or_else(|| Number::from(0)))
    }
}

/// A progress bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    widget: Widget,
}

impl Progress {
    /// A progress bar at `value` (out of `max`, 100 unless set with [`Progress::option`]).
    pub fn new(title: impl Into<String>, value: impl Into<ProgressValue>) -> Self {
        let mut widget = new_widget(WidgetKind::Progress, title.into());
        widget.spec.insert("value".into(), Value::Number(value.into().0));
        Progress { widget }
    }
}

common_options!(Progress);
extra_options!(Progress, option);

/// Ask the person for files.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePicker {
    widget: Widget,
}

impl FilePicker {
    /// A file picker titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        FilePicker { widget: new_widget(WidgetKind::FilePicker, title.into()) }
    }

    /// Explanatory text.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        set_text(&mut self.widget.spec, "body", body.into());
        self
    }

    /// Whether several files may be picked.
    pub fn multiple(mut self, multiple: bool) -> Self {
        self.widget.spec.insert("multiple".into(), json!(multiple));
        self
    }

    /// Accepted MIME types or extensions (left out when empty).
    pub fn accept<S: Into<String>>(mut self, accept: impl IntoIterator<Item = S>) -> Self {
        let accept: Vec<Value> = accept.into_iter().map(|item| json!(item.into())).collect();
        if accept.is_empty() {
            self.widget.spec.remove("accept");
        } else {
            self.widget.spec.insert("accept".into(), Value::Array(accept));
        }
        self
    }

    /// The most files that may be picked (`maxFiles` on the wire).
    pub fn max_files(mut self, max_files: u32) -> Self {
        self.widget.spec.insert("maxFiles".into(), json!(max_files));
        self
    }
}

common_options!(FilePicker);

/// Ask for a date, a time, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct DateTime {
    widget: Widget,
}

impl DateTime {
    /// A picker titled `title` in `mode` (`date`, `time` or `datetime`).
    pub fn new(title: impl Into<String>, mode: impl Into<String>) -> Self {
        let mut widget = new_widget(WidgetKind::DateTime, title.into());
        widget.spec.insert("mode".into(), json!(mode.into()));
        DateTime { widget }
    }

    /// Explanatory text.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        set_text(&mut self.widget.spec, "body", body.into());
        self
    }

    /// The earliest value allowed.
    pub fn min(mut self, min: impl Into<String>) -> Self {
        set_text(&mut self.widget.spec, "min", min.into());
        self
    }

    /// The latest value allowed.
    pub fn max(mut self, max: impl Into<String>) -> Self {
        set_text(&mut self.widget.spec, "max", max.into());
        self
    }
}

common_options!(DateTime);

/// A change to a widget already sent (`widget.update`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WidgetPatch {
    widget_ref: String,
    spec: Option<Map<String, Value>>,
    expires_at: Option<String>,
    id: Option<String>,
}

impl WidgetPatch {
    /// A patch to the widget whose id is `widget_ref`.
    pub fn new(widget_ref: impl Into<String>) -> Self {
        WidgetPatch { widget_ref: widget_ref.into(), ..Default::default() }
    }

    /// The widget's new `spec` (sent even when empty).
    pub fn spec(mut self, spec: Map<String, Value>) -> Self {
        self.spec = Some(spec);
        self
    }

    /// The widget's new expiry (sent even when empty).
    pub fn expires_at(mut self, at: impl Into<String>) -> Self {
        self.expires_at = Some(at.into());
        self
    }

    /// The update's own id instead of a fresh UUID.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The payload text and the update's id.
    pub fn encode(self, fresh_id: impl FnOnce() -> String) -> (String, String) {
        let id = self.id.filter(|id| !id.is_empty()).unwrap_or_else(fresh_id);
        let mut patch = Map::new();
        if let Some(spec) = self.spec {
            patch.insert("spec".into(), Value::Object(spec));
        }
        if let Some(expires_at) = self.expires_at {
            patch.insert("expires_at".into(), json!(expires_at));
        }
        let mut payload = Map::new();
        payload.insert("type".into(), json!("widget.update"));
        payload.insert("id".into(), json!(id));
        payload.insert("v".into(), json!(1));
        payload.insert("ref".into(), json!(self.widget_ref));
        payload.insert("patch".into(), Value::Object(patch));
        (id, pyjson::dumps(&Value::Object(payload), pyjson::Style::DEFAULT))
    }
}

/// A person's answer to a widget, as their app sends it (`widget.response`).
pub fn response_payload(id: &str, widget_ref: &str, value: Option<Value>, cancelled: bool) -> String {
    let mut payload = Map::new();
    payload.insert("type".into(), json!("widget.response"));
    payload.insert("id".into(), json!(id));
    payload.insert("ref".into(), json!(widget_ref));
    payload.insert("value".into(), value.unwrap_or(Value::Null));
    payload.insert("cancelled".into(), json!(cancelled));
    Value::Object(payload).to_string()
}

/// A standard widget as a person's app receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedWidget {
    /// The widget's id (answers refer to it).
    pub id: String,
    /// Its kind.
    pub kind: WidgetKind,
    /// Its `spec`.
    pub spec: Map<String, Value>,
    /// Its expiry, if any.
    pub expires_at: Option<String>,
    /// Its response mode, if any.
    pub response_mode: Option<ResponseMode>,
}

/// Reads a `widget.standard` payload (the person's side); `None` for anything else.
pub fn parse_standard(text: &str) -> Option<ReceivedWidget> {
    let object = super::json_object(text)?;
    if object.get("type")?.as_str()? != "widget.standard" || object.get("v")?.as_u64()? != 1 {
        return None;
    }
    Some(ReceivedWidget {
        id: object.get("id")?.as_str()?.to_owned(),
        kind: WidgetKind::from_name(object.get("kind")?.as_str()?)?,
        spec: object.get("spec")?.as_object()?.clone(),
        expires_at: object.get("expires_at").and_then(Value::as_str).map(str::to_owned),
        response_mode: object.get("response_mode").and_then(Value::as_str).and_then(ResponseMode::from_name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(widget: impl Into<Widget>) -> String {
        widget.into().encode(|| "fresh".into()).1
    }

    #[test]
    fn every_kind_encodes_in_official_order() {
        assert_eq!(
            encode(Confirm::new("Go?").body("").danger(false)),
            r#"{"type": "widget.standard", "id": "fresh", "v": 1, "kind": "confirm", "spec": {"title": "Go?", "danger": false}}"#
        );
        assert_eq!(
            encode(
                Choice::new("Pick", [ChoiceOption::new("a", "A")])
                    .extra("multi", true)
                    .response_mode(ResponseMode::Individual)
            ),
            r#"{"type": "widget.standard", "id": "fresh", "v": 1, "kind": "choice", "spec": {"title": "Pick", "options": [{"id": "a", "label": "A"}], "multi": true}, "response_mode": "individual"}"#
        );
        assert_eq!(
            encode(
                Permission::new("Read files")
                    .scopes([PermissionScope::Once, PermissionScope::Session])
                    .expires_at("2030-01-01T00:00:00Z")
            ),
            r#"{"type": "widget.standard", "id": "fresh", "v": 1, "kind": "permission", "spec": {"title": "Read files", "scopes": ["once", "session"]}, "expires_at": "2030-01-01T00:00:00Z"}"#
        );
        assert_eq!(
            encode(
                Form::new("About you", [FormField::new("age", "Age", "number").required(true)])
                    .option("submitLabel", "Send")
            ),
            r#"{"type": "widget.standard", "id": "fresh", "v": 1, "kind": "form", "spec": {"title": "About you", "fields": [{"name": "age", "label": "Age", "type": "number", "required": true}], "submitLabel": "Send"}}"#
        );
        assert_eq!(
            encode(Progress::new("Copying", 0.5).option("max", 1)),
            r#"{"type": "widget.standard", "id": "fresh", "v": 1, "kind": "progress", "spec": {"title": "Copying", "value": 0.5, "max": 1}}"#
        );
        assert_eq!(
            encode(FilePicker::new("Upload").multiple(true).accept(["image/*"]).max_files(3)),
            r#"{"type": "widget.standard", "id": "fresh", "v": 1, "kind": "file-picker", "spec": {"title": "Upload", "multiple": true, "accept": ["image/*"], "maxFiles": 3}}"#
        );
        assert_eq!(
            encode(DateTime::new("When?", "date").min("2026-01-01").max("")),
            r#"{"type": "widget.standard", "id": "fresh", "v": 1, "kind": "datetime", "spec": {"title": "When?", "mode": "date", "min": "2026-01-01"}}"#
        );
    }

    #[test]
    fn given_id_is_kept_and_returned() {
        let (id, payload) = Widget::from(Progress::new("p", 50).id("w-9")).encode(|| panic!("not needed"));
        assert_eq!(id, "w-9");
        assert!(payload.contains(r#""id": "w-9""#) && payload.contains(r#""value": 50"#));
    }

    #[test]
    fn updates_keep_empty_values() {
        let (id, payload) = WidgetPatch::new("w1").spec(Map::new()).expires_at("").encode(|| "u1".into());
        assert_eq!(id, "u1");
        assert_eq!(
            payload,
            r#"{"type": "widget.update", "id": "u1", "v": 1, "ref": "w1", "patch": {"spec": {}, "expires_at": ""}}"#
        );
        let parsed = super::super::parse_payload(&payload).widget_update.unwrap();
        assert_eq!(parsed.widget_ref, "w1");
    }

    #[test]
    fn persons_read_widgets_and_answer_them() {
        let (_, payload) =
            Widget::from(Confirm::new("Go?").response_mode(ResponseMode::Collective)).encode(|| "w".into());
        let widget = parse_standard(&payload).unwrap();
        assert_eq!((widget.kind, widget.response_mode), (WidgetKind::Confirm, Some(ResponseMode::Collective)));
        let answer = response_payload("r1", &widget.id, Some(json!(true)), false);
        let parsed = super::super::parse_payload(&answer).widget_response.unwrap();
        assert_eq!((parsed.widget_ref.as_str(), parsed.value), ("w", Some(json!(true))));
        assert!(parse_standard("{\"type\":\"widget.standard\"}").is_none());
    }
}
