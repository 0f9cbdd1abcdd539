//! The modifier hooks' results are read with one check serde's derive cannot say: `patch` comes
//! instead of the whole `request` (or `response`), never with it.

use serde::{Deserialize, Deserializer};

use super::{CacheInstruction, ModifyRequestResult, ModifyResponseResult};
use crate::patch::{RequestPatch, ResponsePatch};
use crate::types::{HttpRequest, HttpResponse};

/// The members of a [`ModifyRequestResult`] as read, before the check that `request` and
/// `patch` do not come together.
#[derive(Deserialize)]
struct ModifyRequestResultFields {
    #[serde(default)]
    request: Option<HttpRequest>,
    #[serde(default)]
    patch: Option<RequestPatch>,
    #[serde(default)]
    response: Option<HttpResponse>,
    #[serde(default)]
    cache: Option<CacheInstruction>,
}

impl<'de> Deserialize<'de> for ModifyRequestResult {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = ModifyRequestResultFields::deserialize(deserializer)?;
        if fields.request.is_some() && fields.patch.is_some() {
            return Err(serde::de::Error::custom(
                "a modify_request result carries `request` or `patch`, not both",
            ));
        }
        Ok(ModifyRequestResult {
            request: fields.request,
            patch: fields.patch,
            response: fields.response,
            cache: fields.cache,
        })
    }
}

/// The members of a [`ModifyResponseResult`] as read, before the check that `response` and
/// `patch` do not come together.
#[derive(Deserialize)]
struct ModifyResponseResultFields {
    #[serde(default)]
    response: Option<HttpResponse>,
    #[serde(default)]
    patch: Option<ResponsePatch>,
}

impl<'de> Deserialize<'de> for ModifyResponseResult {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = ModifyResponseResultFields::deserialize(deserializer)?;
        if fields.response.is_some() && fields.patch.is_some() {
            return Err(serde::de::Error::custom(
                "a modify_response result carries `response` or `patch`, not both",
            ));
        }
        Ok(ModifyResponseResult {
            response: fields.response,
            patch: fields.patch,
        })
    }
}
