//! Phase 8, **record**: runs last, on every response the pipeline produced (those the
//! request checks refused are recorded by `pipeline::refused`, requests dropped before an
//! answer by the exchange's `Drop`). When the exchange is measured (some metrics exporter wants
//! request, upstream or event records), its [`RequestRecord`](crate::timing::RequestRecord)
//! gets the status and upstream and rides on the response body, which finishes it (total
//! latency, bytes out) once the body has been sent or dropped.
//!
//! Default (metrics off): nothing; the response goes out as it is.

use http::Response;

use super::Exchange;
use crate::body::ProxyBody;

impl Exchange<'_> {
    /// Hands the metrics record, if any, to the response body.
    pub(super) fn record(mut self, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
        if let Some(mut record) = self.record.take() {
            record.status = response.status().as_u16();
            record.upstream = self.upstream.as_ref().map(|u| u.upstream.id.clone());
            if let Some(id) = self.request_id() {
                record.request_id = id.to_str().ok().map(str::to_string);
            }
            response.body_mut().set_record(record);
        }
        response
    }
}
