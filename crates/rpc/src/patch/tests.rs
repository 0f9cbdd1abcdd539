//! Tests of patch parsing, the shapes refused, and the patches computed between two views.

use serde_json::json;

use super::*;
use crate::methods::{ModifyRequestResult, ModifyResponseResult};

fn request(headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: "/a".into(),
        prefixless_path: "/a".into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..HttpRequest::default()
    }
}

#[test]
fn a_request_patch_is_read_and_applied() {
    let result: ModifyRequestResult = serde_json::from_value(json!({"patch": {
        "set_headers": {"X-User": "alice", "x-multi": ["1", "2"]},
        "append_headers": [["x-trace", "t"]],
        "remove_headers": ["x-drop"],
        "method": "POST",
        "query": null,
        "prefixless_path": "/b",
        "upstream": "api",
        "context": {"user": "alice", "gone": null}
    }}))
    .unwrap();
    let patch = result.patch.unwrap();
    assert_eq!(patch.query, Some(None), "null removes the query");
    let mut view = request(&[("x-drop", "1"), ("x-user", "bob"), ("x-trace", "s")]);
    view.query = Some("q=1".into());
    view.context.insert("gone".into(), json!(1));
    patch.apply(&mut view);
    assert_eq!(
        view.headers,
        vec![
            ("x-trace".to_owned(), "s".to_owned()),
            ("x-multi".to_owned(), "1".to_owned()),
            ("x-multi".to_owned(), "2".to_owned()),
            ("x-user".to_owned(), "alice".to_owned()),
            ("x-trace".to_owned(), "t".to_owned()),
        ]
    );
    assert_eq!(view.method, "POST");
    assert_eq!(view.path, "/a", "the path is unchanged");
    assert_eq!(view.prefixless_path, "/b");
    assert_eq!(view.query, None);
    assert_eq!(view.upstream.as_deref(), Some("api"));
    assert_eq!(
        view.context,
        json!({"user": "alice"}).as_object().unwrap().clone()
    );
}

#[test]
fn bad_patches_are_refused() {
    let bad = [
        json!({"patch": {"set_headers": {"bad name": "x"}}}),
        json!({"patch": {"set_headers": {"x": "a\r\nb"}}}),
        json!({"patch": {"append_headers": [["x", "1", "2"]]}}),
        json!({"patch": {"remove_headers": [""]}}),
        json!({"patch": {"headers": []}}),
        json!({"patch": {"status": 200}}),
        json!({"patch": {}, "request": {"method": "GET", "path": "/"}}),
    ];
    for result in bad {
        assert!(
            serde_json::from_value::<ModifyRequestResult>(result.clone()).is_err(),
            "{result} is refused"
        );
    }
    let bad = [
        json!({"patch": {"status": 99}}),
        json!({"patch": {"status": 1000}}),
        json!({"patch": {"method": "GET"}}),
        json!({"patch": {"status": 200}, "response": {"status": 200}}),
    ];
    for result in bad {
        assert!(
            serde_json::from_value::<ModifyResponseResult>(result.clone()).is_err(),
            "{result} is refused"
        );
    }
    let fine: ModifyResponseResult =
        serde_json::from_value(json!({"patch": {"status": 999, "set_headers": {"a": []}}}))
            .unwrap();
    assert_eq!(fine.patch.unwrap().status.map(PatchStatus::get), Some(999));
}

#[test]
fn a_patch_is_written_with_only_what_it_changes() {
    let mut patch = RequestPatch::default();
    patch.set_headers.insert(
        FieldName::try_from("X-User").unwrap(),
        FieldValues::One(FieldValue::try_from("alice").unwrap()),
    );
    patch.query = Some(None);
    let result = ModifyRequestResult::patch(patch);
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"patch": {"set_headers": {"x-user": "alice"}, "query": null}})
    );
}

#[test]
fn the_patch_between_two_requests_carries_only_the_changes() {
    let sent = request(&[("a", "1"), ("b", "2"), ("b", "3"), ("drop", "x")]);
    let mut returned = sent.clone();
    returned.headers.retain(|(n, _)| n != "drop");
    returned.headers[0].1 = "changed".into();
    returned.headers.push(("new".into(), "n".into()));
    returned.context.insert("k".into(), json!(1));
    let patch = RequestPatch::between(&sent, &returned).unwrap();
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!({"set_headers": {"a": "changed", "new": "n"}, "remove_headers": ["drop"],
               "context": {"k": 1}})
    );
    assert!(RequestPatch::between(&sent, &sent).unwrap().is_empty());
}

#[test]
fn what_a_patch_cannot_carry_needs_the_whole_request() {
    let sent = request(&[("a", "1")]);
    let mut body = sent.clone();
    body.set_body_bytes(b"new");
    let mut host = sent.clone();
    host.host = "other".into();
    let mut null_context = sent.clone();
    null_context
        .context
        .insert("k".into(), serde_json::Value::Null);
    let mut bad_header = sent.clone();
    bad_header.headers.push(("bad name".into(), "x".into()));
    for returned in [body, host, null_context, bad_header] {
        assert_eq!(
            RequestPatch::between(&sent, &returned),
            None,
            "{returned:?}"
        );
    }
}

#[test]
fn the_patch_between_two_responses_is_status_and_headers() {
    let sent = HttpResponse::new(200, vec![("server".into(), "s".into())]);
    let mut returned = sent.clone();
    returned.status = 203;
    returned.headers.clear();
    let patch = ResponsePatch::between(&sent, &returned).unwrap();
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!({"remove_headers": ["server"], "status": 203})
    );
    let mut body = sent.clone();
    body.body = Some("new".into());
    assert_eq!(ResponsePatch::between(&sent, &body), None);
}
