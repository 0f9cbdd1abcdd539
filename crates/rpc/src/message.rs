//! The JSON-RPC 2.0 message model: requests, notifications and responses, parsed from one line.
//!
//! Params and results stay raw JSON ([`RawValue`]) until the code that knows their type reads
//! them, so a message is parsed once, not twice.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorObject;

/// The id of a request: a number or a string, as JSON-RPC 2.0 allows. Ids are chosen by the
/// sender of a request and are unique among that sender's requests in flight.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A numeric id (gatekeeper itself always sends these).
    Number(i64),
    /// A string id.
    String(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// A request: a call that expects a response with the same id.
#[derive(Debug)]
pub struct Request {
    /// The sender's id for this request.
    pub id: RequestId,
    /// The method to call.
    pub method: String,
    /// The params, as raw JSON, if any.
    pub params: Option<Box<RawValue>>,
}

/// A notification: a call that expects no response.
#[derive(Debug)]
pub struct Notification {
    /// The method to call.
    pub method: String,
    /// The params, as raw JSON, if any.
    pub params: Option<Box<RawValue>>,
}

/// A response to an earlier request.
#[derive(Debug)]
pub struct Response {
    /// The id of the request answered; `None` when the other side could not read the request's id
    /// (e.g. a parse error).
    pub id: Option<RequestId>,
    /// The result, or the error.
    pub outcome: Result<Box<RawValue>, ErrorObject>,
}

/// Any message that can arrive on a connection.
#[derive(Debug)]
pub enum Message {
    /// A call expecting a response.
    Request(Request),
    /// A call expecting no response.
    Notification(Notification),
    /// A response to a call we made.
    Response(Response),
}

/// Why a line is not a JSON-RPC message.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The line is not JSON, or not a JSON object of the expected shape.
    #[error("not a JSON-RPC message: {0}")]
    Json(#[from] serde_json::Error),
    /// The object is JSON but neither a request, a notification nor a response.
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(&'static str),
}

/// Every field any message may have; [`Message::parse`] decides which kind it is.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a str>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Option<RequestId>>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

/// Distinguishes `"id": null` (Some(None)) from a missing id (None).
fn present<'de, D>(deserializer: D) -> Result<Option<Option<RequestId>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<RequestId>::deserialize(deserializer).map(Some)
}

impl Message {
    /// Parses one line into a message.
    pub fn parse(line: &str) -> Result<Message, ParseError> {
        let envelope: Envelope<'_> = serde_json::from_str(line)?;
        if envelope.jsonrpc != Some("2.0") {
            return Err(ParseError::Invalid("`jsonrpc` must be \"2.0\""));
        }
        match (envelope.method, envelope.id) {
            (Some(method), Some(Some(id))) => Ok(Message::Request(Request {
                id,
                method,
                params: envelope.params,
            })),
            (Some(_), Some(None)) => Err(ParseError::Invalid("a request id must not be null")),
            (Some(method), None) => Ok(Message::Notification(Notification {
                method,
                params: envelope.params,
            })),
            (None, Some(id)) => {
                let outcome = match (envelope.result, envelope.error) {
                    (_, Some(error)) => Err(error),
                    (Some(result), None) => Ok(result),
                    // `"result": null` arrives as None through Option<Box<RawValue>>.
                    (None, None) => Ok(null()),
                };
                Ok(Message::Response(Response { id, outcome }))
            }
            (None, None) => Err(ParseError::Invalid("neither `method` nor `id` present")),
        }
    }
}

/// The raw JSON `null`.
pub fn null() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

/// Serializes a value into raw JSON.
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    serde_json::value::to_raw_value(value)
}

#[derive(Serialize)]
struct OutgoingRequest<'a, P: Serialize + ?Sized> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RequestId>,
    method: &'a str,
    params: &'a P,
}

#[derive(Serialize)]
struct OutgoingResponse<'a> {
    jsonrpc: &'static str,
    id: Option<&'a RequestId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorObject>,
}

/// Encodes a request (with `id`) or a notification (without) as one compact line, without `\n`.
pub fn encode_call<P: Serialize + ?Sized>(
    id: Option<&RequestId>,
    method: &str,
    params: &P,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&OutgoingRequest {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
}

/// Encodes a response as one compact line, without `\n`.
pub fn encode_response(
    id: Option<&RequestId>,
    outcome: &Result<Box<RawValue>, ErrorObject>,
) -> Result<String, serde_json::Error> {
    let (result, error) = match outcome {
        Ok(result) => (Some(result.as_ref()), None),
        Err(error) => (None, Some(error)),
    };
    serde_json::to_string(&OutgoingResponse {
        jsonrpc: "2.0",
        id,
        result,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":7,"method":"start","params":{}}"#).unwrap();
        assert!(matches!(
            m,
            Message::Request(Request {
                id: RequestId::Number(7),
                ..
            })
        ));
        let m = Message::parse(r#"{"jsonrpc":"2.0","method":"log","params":[1]}"#).unwrap();
        assert!(matches!(m, Message::Notification(_)));
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":"a","result":null}"#).unwrap();
        match m {
            Message::Response(Response { id, outcome }) => {
                assert_eq!(id, Some(RequestId::String("a".into())));
                assert_eq!(outcome.unwrap().get(), "null");
            }
            other => panic!("unexpected {other:?}"),
        }
        let m = Message::parse(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
        )
        .unwrap();
        match m {
            Message::Response(Response {
                id: None,
                outcome: Err(e),
            }) => {
                assert_eq!(e.code(), -32700)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_what_is_not_json_rpc() {
        assert!(Message::parse("hello").is_err());
        assert!(Message::parse(r#"{"id":1,"method":"x"}"#).is_err());
        assert!(Message::parse(r#"{"jsonrpc":"2.0"}"#).is_err());
        assert!(Message::parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).is_err());
    }

    #[test]
    fn encodes_compact_lines() {
        let line =
            encode_call(Some(&RequestId::Number(1)), "start", &serde_json::json!({})).unwrap();
        assert_eq!(
            line,
            r#"{"jsonrpc":"2.0","id":1,"method":"start","params":{}}"#
        );
        let line = encode_call(None, "log", &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(line, r#"{"jsonrpc":"2.0","method":"log","params":{"a":1}}"#);
        let line = encode_response(Some(&RequestId::Number(1)), &Ok(null())).unwrap();
        assert_eq!(line, r#"{"jsonrpc":"2.0","id":1,"result":null}"#);
        let err = crate::error::error_object(-32601, "no such method");
        let line = encode_response(None, &Err(err)).unwrap();
        assert_eq!(
            line,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"no such method"}}"#
        );
    }
}
