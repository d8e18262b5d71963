//! The create-session request: JSON body to validated values, with Smuggler's error texts.
//!
//! Smuggler (spec §9) binds the body to a DTO of strings, fills in defaults for an absent or
//! empty `omeroPort`/`keepAliveDuration`, then runs one parser per field and reports every
//! failure as `<label>: <message>`, each line ended by a newline. The parsers are Java's:
//! an absent or empty string is "no input", numbers go through `Integer.parseInt` (port) or
//! `Long.parseLong` (keep-alive) whose failure text is `For input string: "<value>"`, and a
//! parsed value that is not above zero is `not a positive integer: <value>`. Host and port are
//! one pair labelled `omeroHost, omeroPort`: the host is checked first and its failure hides
//! the port's, then the two are put into an `omero://host:port/` URI, whose syntax errors are
//! reported with Java's `URISyntaxException` wording.
//!
//! Differences from Smuggler, on purpose: JSON numbers and booleans are taken as their text
//! (Jackson does the same for strings); a field holding an array or object is one more line
//! ("expected a string") instead of an unreadable-body error; an empty or malformed body gets
//! a JSON reason instead of Spring's error page.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::auth::Password;

/// Default `omeroPort` (`OmeroDefault.Port`).
pub const DEFAULT_PORT: &str = "4064";
/// Default `keepAliveDuration` in milliseconds (`OmeroDefault.SessionTimeout`).
pub const DEFAULT_KEEP_ALIVE_MS: &str = "600000";
/// Reason for a JSON `null` body.
pub const NO_REQUEST: &str = "no create session request";

const HOST_PORT_LABEL: &str = "omeroHost, omeroPort";

/// A request that passed validation. The password is only held until it is checked.
#[derive(Clone, PartialEq, Eq)]
pub struct CreateSessionRequest {
    /// Validated only: the session is always made on this server.
    pub omero_host: String,
    pub omero_port: i32,
    pub username: String,
    pub password: Password,
    pub keep_alive: Duration,
}

impl fmt::Debug for CreateSessionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateSessionRequest")
            .field("omero_host", &self.omero_host)
            .field("omero_port", &self.omero_port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// Why a body is refused; `Display` is the `reason` sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("empty request body: expected a JSON object")]
    EmptyBody,
    /// serde_json's message names a position only, never the input, so no secret leaks.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("{NO_REQUEST}")]
    Null,
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// One entry per bad field, already labelled; sent as Smuggler's `unlines`.
    #[error("{}", unlines(.0))]
    Invalid(Vec<String>),
}

/// One field as received: Smuggler's DTO holds strings, so only the text matters.
enum Field {
    Absent,
    Text(String),
    Unusable(&'static str),
}

/// Parses and validates a request body.
pub fn parse_request(body: &[u8]) -> Result<CreateSessionRequest, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::EmptyBody);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    match value {
        Value::Null => Err(RequestError::Null),
        Value::Object(map) => validate(&map),
        other => Err(RequestError::NotAnObject(kind(&other))),
    }
}

fn validate(map: &Map<String, Value>) -> Result<CreateSessionRequest, RequestError> {
    let host = field(map, "omeroHost");
    let port = with_default(field(map, "omeroPort"), DEFAULT_PORT);
    let username = field(map, "username");
    let password = field(map, "password");
    let keep_alive = with_default(field(map, "keepAliveDuration"), DEFAULT_KEEP_ALIVE_MS);

    let omero = labelled(HOST_PORT_LABEL, host_and_port(&host, &port));
    let username = labelled("username", non_empty(&username));
    let password = labelled("password", non_empty(&password));
    let keep_alive = labelled("keepAliveDuration", positive_long(&keep_alive));

    let errors: Vec<String> = [
        omero.as_ref().err(),
        username.as_ref().err(),
        password.as_ref().err(),
        keep_alive.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    match (omero, username, password, keep_alive) {
        (Ok((omero_host, omero_port)), Ok(username), Ok(password), Ok(keep_alive)) => {
            Ok(CreateSessionRequest {
                omero_host,
                omero_port,
                username,
                password: Password::new(password),
                keep_alive: Duration::from_millis(keep_alive.unsigned_abs()),
            })
        }
        _ => Err(RequestError::Invalid(errors)),
    }
}

fn field(map: &Map<String, Value>, name: &str) -> Field {
    match map.get(name) {
        None | Some(Value::Null) => Field::Absent,
        Some(Value::String(s)) => Field::Text(s.clone()),
        Some(Value::Number(n)) => Field::Text(n.to_string()),
        Some(Value::Bool(b)) => Field::Text(b.to_string()),
        Some(other) => Field::Unusable(kind(other)),
    }
}

// Smuggler's applyDefaults: absent and empty both take the default.
fn with_default(f: Field, default: &str) -> Field {
    match f {
        Field::Absent => Field::Text(default.to_string()),
        Field::Text(s) if s.is_empty() => Field::Text(default.to_string()),
        other => other,
    }
}

fn labelled<T>(label: &str, r: Result<T, String>) -> Result<T, String> {
    r.map_err(|e| format!("{label}: {e}"))
}

fn non_empty(f: &Field) -> Result<String, String> {
    match f {
        Field::Text(s) if !s.is_empty() => Ok(s.clone()),
        Field::Text(_) | Field::Absent => Err("no input".to_string()),
        Field::Unusable(found) => Err(format!("expected a string, found {found}")),
    }
}

fn host_and_port(host: &Field, port: &Field) -> Result<(String, i32), String> {
    let host = non_empty(host)?;
    let port = positive_int(port)?;
    check_uri_authority(&host, port)?;
    Ok((host, port))
}

fn positive_int(f: &Field) -> Result<i32, String> {
    let text = non_empty(f)?;
    let n: i32 = text.parse().map_err(|_| for_input_string(&text))?;
    if n > 0 {
        Ok(n)
    } else {
        Err(not_positive(n.into()))
    }
}

fn positive_long(f: &Field) -> Result<i64, String> {
    let text = non_empty(f)?;
    let n: i64 = text.parse().map_err(|_| for_input_string(&text))?;
    if n > 0 {
        Ok(n)
    } else {
        Err(not_positive(n))
    }
}

// Java's NumberFormatException text; Rust's integer syntax (optional sign, ASCII digits)
// matches parseInt/parseLong except that Java also takes non-ASCII digits.
fn for_input_string(text: &str) -> String {
    format!("For input string: \"{text}\"")
}

fn not_positive(n: i64) -> String {
    format!("not a positive integer: {n}")
}

/// The part of `new URI("omero://host:port/")` that can fail for a non-empty host: a
/// character RFC 2396 does not allow in an authority. Java reports the first one with its
/// index in the whole URI string.
fn check_uri_authority(host: &str, port: i32) -> Result<(), String> {
    const PREFIX: &str = "omero://";
    let bad = host.chars().position(|c| !authority_char(c));
    match bad {
        None => Ok(()),
        Some(i) => Err(format!(
            "Illegal character in authority at index {}: {PREFIX}{host}:{port}/",
            PREFIX.chars().count() + i
        )),
    }
}

// Unreserved, escape, reserved-in-authority and IPv6 brackets, plus Java's "other" class
// (non-ASCII that is neither a control nor a space). '/', '?' and '#' end the authority,
// so Java accepts them here and reads the rest as path, query or fragment.
fn authority_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "-_.!~*'()%;:@&=+$,[]/?#".contains(c)
    } else {
        !c.is_control() && !c.is_whitespace()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// Smuggler's Strings.unlines: every line, the last one included, ends with a newline.
fn unlines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(body: &str) -> String {
        parse_request(body.as_bytes()).unwrap_err().to_string()
    }

    fn ok(body: &str) -> CreateSessionRequest {
        parse_request(body.as_bytes()).unwrap()
    }

    const MIN: &str = r#"{"omeroHost":"h","username":"u","password":"p"}"#;

    #[test]
    fn minimal_request_takes_defaults() {
        let r = ok(MIN);
        assert_eq!(r.omero_host, "h");
        assert_eq!(r.omero_port, 4064);
        assert_eq!(r.username, "u");
        assert_eq!(r.password.expose(), "p");
        assert_eq!(r.keep_alive, Duration::from_millis(600_000));
    }

    #[test]
    fn explicit_values_and_empty_defaults() {
        let r = ok(
            r#"{"omeroHost":"omero.example.org","omeroPort":"14064","username":"u",
                "password":"p","keepAliveDuration":"1500","extra":1}"#,
        );
        assert_eq!(r.omero_port, 14064);
        assert_eq!(r.keep_alive, Duration::from_millis(1500));
        let r = ok(
            r#"{"omeroHost":"h","omeroPort":"","username":"u","password":"p",
                "keepAliveDuration":""}"#,
        );
        assert_eq!((r.omero_port, r.keep_alive.as_millis()), (4064, 600_000));
        let r = ok(
            r#"{"omeroHost":"h","omeroPort":null,"username":"u","password":"p",
                "keepAliveDuration":null}"#,
        );
        assert_eq!((r.omero_port, r.keep_alive.as_millis()), (4064, 600_000));
    }

    #[test]
    fn numbers_and_booleans_are_taken_as_text() {
        let r = ok(
            r#"{"omeroHost":"h","omeroPort":4064,"username":"u","password":"p",
                "keepAliveDuration":2000}"#,
        );
        assert_eq!((r.omero_port, r.keep_alive.as_millis()), (4064, 2000));
        let r = ok(r#"{"omeroHost":true,"username":7,"password":false}"#);
        assert_eq!((r.omero_host.as_str(), r.username.as_str()), ("true", "7"));
        assert_eq!(
            reason(r#"{"omeroHost":"h","username":"u","password":"p","keepAliveDuration":1.5}"#),
            "keepAliveDuration: For input string: \"1.5\"\n"
        );
    }

    #[test]
    fn empty_object_lists_every_required_field() {
        assert_eq!(
            reason("{}"),
            "omeroHost, omeroPort: no input\nusername: no input\npassword: no input\n"
        );
    }

    #[test]
    fn host_lines() {
        let body = r#"{"omeroHost":"","username":"u","password":"p"}"#;
        assert_eq!(reason(body), "omeroHost, omeroPort: no input\n");
        // The host's failure hides the port's.
        let body = r#"{"omeroHost":"","omeroPort":"x","username":"u","password":"p"}"#;
        assert_eq!(reason(body), "omeroHost, omeroPort: no input\n");
        let body = r#"{"omeroHost":"a b","username":"u","password":"p"}"#;
        assert_eq!(
            reason(body),
            "omeroHost, omeroPort: Illegal character in authority at index 9: \
             omero://a b:4064/\n"
        );
        let body = r#"{"omeroHost":["h"],"username":"u","password":"p"}"#;
        assert_eq!(
            reason(body),
            "omeroHost, omeroPort: expected a string, found an array\n"
        );
        assert_eq!(
            ok(r#"{"omeroHost":"[::1]","username":"u","password":"p"}"#).omero_host,
            "[::1]"
        );
    }

    #[test]
    fn port_lines() {
        let with_port = |p: &str| {
            reason(&format!(
                r#"{{"omeroHost":"h","omeroPort":{p},"username":"u","password":"p"}}"#
            ))
        };
        assert_eq!(
            with_port(r#""0""#),
            "omeroHost, omeroPort: not a positive integer: 0\n"
        );
        assert_eq!(
            with_port(r#""-1""#),
            "omeroHost, omeroPort: not a positive integer: -1\n"
        );
        assert_eq!(
            with_port("0"),
            "omeroHost, omeroPort: not a positive integer: 0\n"
        );
        assert_eq!(
            with_port(r#""abc""#),
            "omeroHost, omeroPort: For input string: \"abc\"\n"
        );
        assert_eq!(
            with_port(r#"" 1""#),
            "omeroHost, omeroPort: For input string: \" 1\"\n"
        );
        // Integer.parseInt overflows where Long.parseLong would not.
        assert_eq!(
            with_port(r#""2147483648""#),
            "omeroHost, omeroPort: For input string: \"2147483648\"\n"
        );
        assert_eq!(
            with_port("{}"),
            "omeroHost, omeroPort: expected a string, found an object\n"
        );
        let r = ok(r#"{"omeroHost":"h","omeroPort":"+7","username":"u","password":"p"}"#);
        assert_eq!(r.omero_port, 7);
    }

    #[test]
    fn username_and_password_lines() {
        assert_eq!(
            reason(r#"{"omeroHost":"h","username":"","password":"p"}"#),
            "username: no input\n"
        );
        assert_eq!(
            reason(r#"{"omeroHost":"h","username":null,"password":"p"}"#),
            "username: no input\n"
        );
        assert_eq!(
            reason(r#"{"omeroHost":"h","username":"u","password":""}"#),
            "password: no input\n"
        );
        assert_eq!(
            reason(r#"{"omeroHost":"h","username":"u"}"#),
            "password: no input\n"
        );
        assert_eq!(
            reason(r#"{"omeroHost":"h","username":"u","password":{"a":1}}"#),
            "password: expected a string, found an object\n"
        );
    }

    #[test]
    fn keep_alive_lines() {
        let with = |k: &str| {
            reason(&format!(
                r#"{{"omeroHost":"h","username":"u","password":"p","keepAliveDuration":{k}}}"#
            ))
        };
        assert_eq!(
            with(r#""0""#),
            "keepAliveDuration: not a positive integer: 0\n"
        );
        assert_eq!(
            with(r#""-5""#),
            "keepAliveDuration: not a positive integer: -5\n"
        );
        assert_eq!(with("0"), "keepAliveDuration: not a positive integer: 0\n");
        assert_eq!(
            with(r#""soon""#),
            "keepAliveDuration: For input string: \"soon\"\n"
        );
        assert_eq!(
            with(r#""9223372036854775808""#),
            "keepAliveDuration: For input string: \"9223372036854775808\"\n"
        );
        assert_eq!(
            with("[]"),
            "keepAliveDuration: expected a string, found an array\n"
        );
        // Long, not int: beyond 2^31 is fine.
        let r = ok(
            r#"{"omeroHost":"h","username":"u","password":"p","keepAliveDuration":"4294967296"}"#,
        );
        assert_eq!(r.keep_alive.as_millis(), 4_294_967_296);
    }

    #[test]
    fn every_bad_field_one_line_each_in_order() {
        let body = r#"{"omeroHost":"h","omeroPort":"0","username":"","password":"",
                       "keepAliveDuration":"0"}"#;
        assert_eq!(
            reason(body),
            "omeroHost, omeroPort: not a positive integer: 0\nusername: no input\n\
             password: no input\nkeepAliveDuration: not a positive integer: 0\n"
        );
    }

    #[test]
    fn whole_body_failures() {
        assert_eq!(reason("null"), NO_REQUEST);
        assert_eq!(reason(" null "), NO_REQUEST);
        assert_eq!(reason(""), "empty request body: expected a JSON object");
        assert_eq!(reason(" \n"), "empty request body: expected a JSON object");
        assert!(reason("{").starts_with("malformed JSON: "));
        assert!(reason(r#"{"password":"secret""#).starts_with("malformed JSON: "));
        assert!(!reason(r#"{"password":"secret""#).contains("secret"));
        assert_eq!(reason("[]"), "expected a JSON object, found an array");
        assert_eq!(reason(r#""x""#), "expected a JSON object, found a string");
        assert_eq!(reason("3"), "expected a JSON object, found a number");
    }

    #[test]
    fn debug_redacts_the_password() {
        let r = ok(r#"{"omeroHost":"h","username":"u","password":"hunter2"}"#);
        let shown = format!("{r:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
