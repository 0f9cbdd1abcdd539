//! Typed dispatch of incoming calls, used by the proxy's manager and by the Rust SDK.
//!
//! A [`Dispatcher`] holds one incoming call (method name and raw params). Each `on::<M>` (or
//! `on_async::<M>`) offers it to the handler of method `M`: if the name is `M::NAME`, the raw
//! params are parsed once into `M::Params`, the handler runs, and its typed `M::Result` is
//! serialised once into the reply; otherwise the call goes on to the next `on`. [`finish`]
//! gives the answer, or `None` when no handler took the call. (rust-analyzer's lsp-server
//! `RequestDispatcher` is the model.)
//!
//! Errors are jsonrpsee's [`ErrorObject`]s: params that do not parse are `-32602`
//! (`invalid params for `method`: …`), a result that cannot be encoded `-32603`.
//!
//! [`finish`]: Dispatcher::finish

use std::future::Future;

use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::error::{codes, error_object, ErrorObject};
use crate::methods::Method;
use crate::peer::{IncomingRequest, Reply};

/// Parses raw params (absent params read as `{}`) into `M::Params`.
pub fn parse_params<M: Method>(params: Option<&RawValue>) -> Result<M::Params, ErrorObject> {
    let raw = params.map_or("{}", RawValue::get);
    serde_json::from_str(raw).map_err(|e| {
        error_object(
            codes::INVALID_PARAMS,
            format!("invalid params for `{}`: {e}", M::NAME),
        )
    })
}

/// Encodes the outcome of a handler of `M`: its result, or its error as the error object.
pub fn encode_outcome<M: Method, E: Into<ErrorObject>>(outcome: Result<M::Result, E>) -> Reply {
    match outcome {
        Ok(result) => serde_json::value::to_raw_value(&result).map_err(|e| {
            error_object(
                codes::INTERNAL_ERROR,
                format!("could not encode the result of `{}`: {e}", M::NAME),
            )
        }),
        Err(error) => Err(error.into()),
    }
}

/// The `method not found` answer for a call no handler took.
pub fn method_not_found(method: &str) -> ErrorObject {
    error_object(
        codes::METHOD_NOT_FOUND,
        format!("method not found: {method}"),
    )
}

/// One incoming call being offered to typed handlers; `Out` is the answer: a [`Reply`] for
/// handlers that answer at once, a future of one for async handlers.
#[must_use = "call `finish` to get the answer"]
pub struct Dispatcher<'a, Out> {
    method: &'a str,
    params: Option<&'a RawValue>,
    answer: Option<Out>,
}

impl<'a, Out> Dispatcher<'a, Out> {
    /// A call of `method` with raw `params` (as they arrived; `None` reads as `{}`).
    pub fn new(method: &'a str, params: Option<&'a RawValue>) -> Self {
        Dispatcher {
            method,
            params,
            answer: None,
        }
    }

    /// The call carried by an incoming request.
    pub fn for_request(request: &'a IncomingRequest) -> Self {
        Dispatcher::new(&request.method, request.params.as_deref())
    }

    /// The method called.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The answer of the handler that took the call, or `None` when none did.
    pub fn finish(self) -> Option<Out> {
        self.answer
    }

    /// Offers the call to `M`: if it is `M`'s and not answered yet, parses the params and lets
    /// `answer` turn them (or the parse error) into the answer.
    fn offer<M: Method>(
        mut self,
        answer: impl FnOnce(Result<M::Params, ErrorObject>) -> Out,
    ) -> Self {
        if self.answer.is_none() && self.method == M::NAME {
            self.answer = Some(answer(parse_params::<M>(self.params)));
        }
        self
    }
}

impl<'a> Dispatcher<'a, Reply> {
    /// Answers a call of `M` with `handler`, which runs at once.
    pub fn on<M, E>(self, handler: impl FnOnce(M::Params) -> Result<M::Result, E>) -> Self
    where
        M: Method,
        E: Into<ErrorObject>,
    {
        self.offer::<M>(|params| encode_outcome::<M, E>(handler(params?)))
    }
}

impl<'a> Dispatcher<'a, BoxFuture<'a, Reply>> {
    /// Answers a call of `M` with the future `handler` returns.
    pub fn on_async<M, E, Fut>(self, handler: impl FnOnce(M::Params) -> Fut) -> Self
    where
        M: Method,
        E: Into<ErrorObject>,
        Fut: Future<Output = Result<M::Result, E>> + Send + 'a,
    {
        self.offer::<M>(|params| match params {
            Ok(params) => {
                let answer = handler(params);
                Box::pin(async move { encode_outcome::<M, E>(answer.await) })
            }
            Err(error) => Box::pin(std::future::ready(Err(error))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::to_raw;
    use crate::methods::{AddUpstream, Empty, GetBackend, GetBackendResult, RemoveUpstream};

    fn sync_dispatch(method: &str, params: Option<&RawValue>) -> Option<Reply> {
        Dispatcher::new(method, params)
            .on::<AddUpstream, ErrorObject>(|p| {
                if p.upstream.id == "taken" {
                    Err(error_object(codes::CONFLICT, "taken"))
                } else {
                    Ok(Empty {})
                }
            })
            .on::<RemoveUpstream, ErrorObject>(|_| Ok(Empty {}))
            .finish()
    }

    #[test]
    fn parses_once_and_encodes_the_typed_result() {
        let params = to_raw(&serde_json::json!({"upstream": {"id": "a"}})).unwrap();
        let reply = sync_dispatch("add_upstream", Some(&params)).unwrap();
        assert_eq!(reply.unwrap().get(), "{}");
        let params = to_raw(&serde_json::json!({"upstream": {"id": "taken"}})).unwrap();
        let error = sync_dispatch("add_upstream", Some(&params))
            .unwrap()
            .unwrap_err();
        assert_eq!((error.code(), error.message()), (codes::CONFLICT, "taken"));
        let error = sync_dispatch("remove_upstream", None).unwrap().unwrap_err();
        assert_eq!(error.code(), codes::INVALID_PARAMS);
        assert!(error
            .message()
            .starts_with("invalid params for `remove_upstream`: "));
        assert!(sync_dispatch("get_backend", None).is_none());
    }

    #[tokio::test]
    async fn async_handlers_answer_through_a_future() {
        let params = to_raw(
            &serde_json::json!({"upstream_id": "u", "request": {"method": "GET", "path": "/"}}),
        )
        .unwrap();
        let answer = Dispatcher::<BoxFuture<'_, Reply>>::new("get_backend", Some(&params))
            .on_async::<GetBackend, ErrorObject, _>(|p| async move {
                Ok(GetBackendResult {
                    backend_id: Some(p.upstream_id),
                })
            })
            .finish()
            .unwrap();
        assert_eq!(answer.await.unwrap().get(), r#"{"backend_id":"u"}"#);
    }
}
