//! HTTP answers in the shapes DefectDojo 3.2.0 produces (DRF plus
//! `dojo/api_v2/exception_handler.py`).

use axum::body::Body as AxumBody;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::parse::{py_list_repr, py_repr};

/// `ErrorPageProductAnnouncement` adds this upsell list next to error messages. The
/// exact text is not part of the recorded behaviour; clients must not depend on it.
pub(crate) const PRO: &[&str] = &[
    "Did you know that DefectDojo Pro offers universal importers, and more? Try it for free at https://defectdojo.com/pricing",
];

pub(crate) enum ReplyBody {
    Json(Value),
    Html(String),
}

pub(crate) struct Reply {
    pub status: u16,
    pub body: ReplyBody,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: Value) -> Self {
        Reply {
            status,
            body: ReplyBody::Json(value),
            headers: Vec::new(),
        }
    }

    pub fn html(status: u16, html: String) -> Self {
        Reply {
            status,
            body: ReplyBody::Html(html),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// DRF `APIException`: `{"detail": ...}`. The handler adds no `message` because
    /// `str(exc)` equals the detail.
    pub fn detail(status: u16, detail: &str) -> Self {
        Self::json(status, json!({ "detail": detail }))
    }

    pub fn not_found() -> Self {
        Self::detail(404, "Not found.")
    }

    /// A DRF `ValidationError(str)` raised with a list detail (e.g. from a permission
    /// class): the handler cannot add keys to a list, so the body is a bare JSON list.
    pub fn bare_list(msg: &str) -> Self {
        Self::json(400, json!([msg]))
    }

    /// A Django `ValidationError(msg)` from the importer/parser: `{"message": "['msg']"}`.
    pub fn django_invalid(msg: &str) -> Self {
        Self::json(
            400,
            json!({ "message": py_list_repr(&[msg.to_string()]), "pro": PRO }),
        )
    }

    /// Any unexpected exception with `api_expose_error_details=false` (the default).
    pub fn internal() -> Self {
        Self::json(
            500,
            json!({ "message": "Internal server error, check logs for details", "pro": PRO }),
        )
    }

    /// Serializer field errors: the DRF dict plus `message` = `str(exc)` (a Python repr
    /// of the `ErrorDetail` dict) and `pro`. Entries are (field, message, code).
    pub fn field_errors(errors: &[(String, String, &'static str)]) -> Self {
        let mut fields: Vec<(String, Vec<(String, &'static str)>)> = Vec::new();
        for (field, msg, code) in errors {
            match fields.iter_mut().find(|(f, _)| f == field) {
                Some((_, msgs)) => msgs.push((msg.clone(), code)),
                None => fields.push((field.clone(), vec![(msg.clone(), code)])),
            }
        }
        let repr = fields
            .iter()
            .map(|(field, msgs)| {
                let details: Vec<String> = msgs
                    .iter()
                    .map(|(m, c)| {
                        format!("ErrorDetail(string={}, code={})", py_repr(m), py_repr(c))
                    })
                    .collect();
                format!("{}: [{}]", py_repr(field), details.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut body = Map::new();
        for (field, msgs) in &fields {
            body.insert(
                field.clone(),
                Value::from(msgs.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>()),
            );
        }
        body.insert("message".into(), Value::String(format!("{{{repr}}}")));
        body.insert("pro".into(), json!(PRO));
        Self::json(400, Value::Object(body))
    }

    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (content_type, bytes) = match self.body {
            ReplyBody::Json(v) => ("application/json", v.to_string().into_bytes()),
            ReplyBody::Html(h) => ("text/html", h.into_bytes()),
        };
        let mut response = (status, AxumBody::from(bytes)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        response
    }
}
