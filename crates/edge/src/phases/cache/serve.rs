//! Answering from a stored response: whole, or the ranges a client asked for, from memory or
//! from the disk tier.

use super::fields::{add_cache_status_ttl, strip_targeted_fields};
use crate::body::EdgeBody;
use crate::own_responses::edge_page;
use cache::disk::DiskObject;
use cache::policy::{self, validation};
use cache::{StoredObject, range};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};

/// A response built from a stored one (RFC 9111 §4), or a 304/412 when the client's own
/// preconditions say so (§4.3.2).
///
/// `own_field`: the site's own targeted field, which (with the other fields meant for this
/// edge) the stored copy keeps and the client never gets.
pub(super) fn serve(
    object: &StoredObject,
    disk: Option<DiskObject>,
    method: &Method,
    request: &HeaderMap,
    own_field: Option<&str>,
    now: u64,
    params: &str,
) -> Response<EdgeBody> {
    let body_len = disk
        .as_ref()
        .map_or(object.body.len() as u64, DiskObject::body_len);
    let age = object.timing.current_age(now);
    // RFC 9211 §2.5: ttl is the remaining freshness; negative when stale.
    let ttl = object.timing.lifetime as i64 - age as i64;
    // Most requests carry no precondition and no Range: one pass over their names (usually a
    // handful) skips five lookups and the date parsing.
    let conditional = request
        .keys()
        .any(|name| name.as_str().starts_with("if-") || *name == header::RANGE);
    let precondition = if conditional {
        validation::evaluate_preconditions(request, &object.headers, object.timing.response_time)
    } else {
        validation::Precondition::Proceed
    };
    let (status, mut headers, body) = match precondition {
        validation::Precondition::NotModified => (
            StatusCode::NOT_MODIFIED,
            validation::not_modified_fields(&object.headers),
            EdgeBody::empty(),
        ),
        validation::Precondition::Failed => {
            return edge_page(StatusCode::PRECONDITION_FAILED, false);
        }
        validation::Precondition::Proceed
            if *method == Method::GET && object.status == StatusCode::OK =>
        {
            match disk {
                None if !conditional => (
                    StatusCode::OK,
                    object.headers.clone(),
                    EdgeBody::fixed(object.body.clone()),
                ),
                None => ranged(object, request),
                Some(disk) => ranged_on_disk(object, disk, request),
            }
        }
        validation::Precondition::Proceed => {
            let body = match (method, disk) {
                (&Method::HEAD, _) => EdgeBody::empty(),
                (_, Some(disk)) => stream_from_disk(disk, 0, body_len),
                (_, None) => EdgeBody::fixed(object.body.clone()),
            };
            (object.status, object.headers.clone(), body)
        }
    };
    // §5.2.2.4: fields a qualified no-cache names are not sent without revalidation.
    if let policy::Qualified::Fields(names) = &object.directives.no_cache {
        for name in names {
            headers.remove(name);
        }
    }
    // (Purge tags never make it into a stored header.)
    strip_targeted_fields(&mut headers, own_field);
    // §5.1: the Age of a response from the cache.
    headers.insert(header::AGE, HeaderValue::from(age));
    // RFC 9110 §8.6: never in a 204.
    if *method == Method::HEAD
        && !headers.contains_key(header::CONTENT_LENGTH)
        && status == object.status
        && status != StatusCode::NO_CONTENT
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
    add_cache_status_ttl(&mut headers, params, Some(ttl));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A GET of a stored 200, with its Range answered from the stored body (RFC 9110 §14): 206
/// with one span or a multipart/byteranges body, 416, or the full 200.
pub(super) fn ranged(
    object: &StoredObject,
    request: &HeaderMap,
) -> (StatusCode, HeaderMap, EdgeBody) {
    let len = object.body.len() as u64;
    let mut headers = object.headers.clone();
    match range::answer(request, &object.headers, len) {
        range::RangeAnswer::Full => (
            StatusCode::OK,
            headers,
            EdgeBody::fixed(object.body.clone()),
        ),
        range::RangeAnswer::Unsatisfiable => {
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}"))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            );
            (
                StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                EdgeBody::empty(),
            )
        }
        range::RangeAnswer::Partial(spans) => {
            // The body's length is the part's; hyper writes Content-Length from it.
            headers.remove(header::CONTENT_LENGTH);
            if let [(first, last)] = spans[..] {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
                let part = object.body.slice(first as usize..=last as usize);
                return (StatusCode::PARTIAL_CONTENT, headers, EdgeBody::fixed(part));
            }
            // A boundary that cannot occur in the parts: derived from the object and the time,
            // checked against the body.
            let mut boundary = format!(
                "palisade-{:016x}",
                object.timing.response_time ^ len.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
            );
            while object
                .body
                .windows(boundary.len())
                .any(|w| w == boundary.as_bytes())
            {
                boundary.push('x');
            }
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = range::multipart(&object.body, &spans, content_type.as_deref(), &boundary);
            if let Ok(value) =
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
            {
                headers.insert(header::CONTENT_TYPE, value);
            }
            (StatusCode::PARTIAL_CONTENT, headers, EdgeBody::fixed(body))
        }
    }
}

/// A GET of a stored 200 whose body is on disk: its Range answered with one span, 416, or the
/// full 200 (several spans of a large body are not assembled: the full response is a valid
/// answer to any Range, RFC 9110 §14.2).
pub(super) fn ranged_on_disk(
    object: &StoredObject,
    disk: DiskObject,
    request: &HeaderMap,
) -> (StatusCode, HeaderMap, EdgeBody) {
    let len = disk.body_len();
    let mut headers = object.headers.clone();
    match range::answer(request, &object.headers, len) {
        range::RangeAnswer::Partial(spans) if spans.len() == 1 => {
            let (first, last) = spans[0];
            headers.remove(header::CONTENT_LENGTH);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            let body = stream_from_disk(disk, first, last - first + 1);
            (StatusCode::PARTIAL_CONTENT, headers, body)
        }
        range::RangeAnswer::Unsatisfiable => {
            headers.remove(header::CONTENT_LENGTH);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            (
                StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                EdgeBody::empty(),
            )
        }
        _ => (StatusCode::OK, headers, stream_from_disk(disk, 0, len)),
    }
}

/// Blocks of a body on disk, `len` bytes from `first`, read on a blocking thread a few blocks
/// ahead of the client (the channel's capacity is the read-ahead). A block that fails its
/// checksum ends the body with an error: the client sees a cut-off response, never wrong bytes.
pub(super) fn stream_from_disk(mut disk: DiskObject, first: u64, len: u64) -> EdgeBody {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let fail = |sender: &tokio::sync::mpsc::Sender<_>, why: String| {
            let _ = sender.blocking_send(Err(why));
        };
        if first > 0
            && let Err(e) = disk.seek(first)
        {
            return fail(&sender, e.to_string());
        }
        let mut left = len;
        while left > 0 {
            match disk.read_block() {
                Ok(Some(mut block)) => {
                    if block.len() as u64 > left {
                        block.truncate(left as usize);
                    }
                    left -= block.len() as u64;
                    if sender.blocking_send(Ok(block)).is_err() {
                        return; // the client went away
                    }
                }
                Ok(None) => return fail(&sender, "stored body shorter than recorded".into()),
                Err(e) => return fail(&sender, e.to_string()),
            }
        }
    });
    EdgeBody::channel(receiver, len)
}
