//! The list's query string, parsed strictly (each bad parameter named), and its opaque
//! cursors.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;

use crate::platform::error::{ApiError, FieldError};
use crate::videos::model::VideoStatus;
use crate::videos::store::ListCursor;

pub(super) struct ListQuery {
    pub(super) status: Option<VideoStatus>,
    pub(super) limit: u64,
    pub(super) cursor: Option<ListCursor>,
}

pub(super) fn encode_cursor(c: &ListCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", c.created_at.timestamp_micros(), c.id))
}

pub(super) fn decode_cursor(s: &str) -> Option<ListCursor> {
    let raw = URL_SAFE_NO_PAD.decode(s).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    let (micros, id) = text.split_once(':')?;
    Some(ListCursor {
        created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id: id.parse().ok()?,
    })
}

pub(super) fn parse_list_query(qs: &str) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        status: None,
        limit: 20,
        cursor: None,
    };
    let mut errors = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(qs.as_bytes()) {
        if seen.insert(k.to_string(), ()).is_some() {
            errors.push(FieldError::new(
                k.to_string(),
                "invalid_query",
                "given more than once",
            ));
            continue;
        }
        match k.as_ref() {
            "status" => match v.parse::<VideoStatus>() {
                Ok(s) => q.status = Some(s),
                Err(()) => errors.push(FieldError::new(
                    "status",
                    "invalid_status",
                    "must be one of queued, rendering, completed, failed, cancelled",
                )),
            },
            // Digits only: `+5` or ` 5` are not the integers the document describes.
            "limit" => match v.parse::<u64>() {
                Ok(n) if (1..=100).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => {
                    q.limit = n
                }
                _ => errors.push(FieldError::new(
                    "limit",
                    "invalid_limit",
                    "must be an integer from 1 to 100",
                )),
            },
            "cursor" => match decode_cursor(&v) {
                Some(c) => q.cursor = Some(c),
                None => errors.push(FieldError::new(
                    "cursor",
                    "invalid_cursor",
                    "must be a next_cursor returned by this endpoint",
                )),
            },
            other => errors.push(FieldError::new(
                other.to_string(),
                "unknown_parameter",
                "unknown query parameter; allowed: status, limit, cursor",
            )),
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(ApiError::Validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let c = ListCursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("valid"),
            id: Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("garbage!"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("12:nope")), None);
    }

    #[test]
    fn list_query_is_strict() {
        assert!(parse_list_query("limit=100&status=queued").is_ok());
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "status=done",
            "cursor=zz",
            "foo=1",
            "limit=1&limit=2",
        ] {
            assert!(parse_list_query(bad).is_err(), "{bad}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Every cursor the list hands out reads back as itself.
            #[test]
            fn cursors_round_trip(micros in -8_000_000_000_000_000i64..8_000_000_000_000_000, id: u128) {
                let c = ListCursor {
                    created_at: DateTime::from_timestamp_micros(micros).expect("in range"),
                    id: Uuid::from_u128(id),
                };
                prop_assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
            }

            /// A client-supplied cursor never panics: it is a cursor or it is rejected.
            #[test]
            fn any_cursor_text_is_decoded_or_rejected(s in "\\PC{0,120}", raw in proptest::collection::vec(any::<u8>(), 0..80)) {
                let _ = decode_cursor(&s);
                let _ = decode_cursor(&URL_SAFE_NO_PAD.encode(&raw));
            }

            /// Any query string is a valid query or a 422 naming parameters; never a panic,
            /// never a silently clamped limit.
            #[test]
            fn any_list_query_is_parsed_or_refused(qs in "\\PC{0,200}", limit in any::<i64>()) {
                let _ = parse_list_query(&qs);
                match parse_list_query(&format!("limit={limit}")) {
                    Ok(q) => prop_assert!((1..=100).contains(&limit) && q.limit == limit as u64),
                    Err(ApiError::Validation(e)) => {
                        prop_assert!(!(1..=100).contains(&limit));
                        prop_assert_eq!(e[0].field.as_str(), "limit");
                    }
                    Err(other) => prop_assert!(false, "unexpected {other:?}"),
                }
            }

            /// `Range` headers on downloads are parsed by actix-files against the file's size:
            /// any header value yields ranges inside the file or an error, never a panic.
            #[test]
            fn any_range_header_stays_inside_the_file(value in "(bytes=)?[0-9,\\- ]{0,40}|\\PC{0,60}", size in 0u64..10_000_000) {
                if let Ok(ranges) = actix_files::HttpRange::parse(&value, size) {
                    for r in ranges {
                        prop_assert!(r.length >= 1 && r.start + r.length <= size, "{r:?} of {size}");
                    }
                }
            }
        }
    }
}
