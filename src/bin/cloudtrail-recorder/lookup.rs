//! CloudTrail `LookupEvents`, answered from the recorded events.

use super::*;

pub(crate) fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    let body = json!({ "__type": kind, "message": message }).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .header("x-amzn-errortype", kind)
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

pub(crate) fn plain(status: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A time parameter: epoch seconds (number or numeric string) or an RFC 3339 string.
/// Returns whole epoch seconds, rounded down (CloudTrail event times have second precision).
pub(crate) fn time_param(v: Option<&Value>, name: &str) -> Result<Option<i64>, String> {
    let secs = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse::<f64>().ok().or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp() as f64)
        }),
        Some(_) => None,
    };
    match secs {
        Some(s) if s.is_finite() => Ok(Some(s.floor() as i64)),
        _ => Err(format!(
            "{name} must be a timestamp (epoch seconds), got {}",
            v.map(Value::to_string).unwrap_or_default()
        )),
    }
}

/// The `Username` LookupEvents reports: the IAM user name, or a role session's name.
pub(crate) fn summary_username(record: &Value) -> Option<String> {
    let id = record.get("userIdentity")?;
    if let Some(u) = id.get("userName").and_then(Value::as_str) {
        return Some(u.to_string());
    }
    let arn = id.get("arn").and_then(Value::as_str)?;
    if arn.contains(":assumed-role/") {
        return arn.rsplit('/').next().map(str::to_owned);
    }
    None
}

pub(crate) fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

pub(crate) fn resources(record: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let req = record.get("requestParameters");
    for (key, kind) in [
        ("userName", "AWS::IAM::User"),
        ("groupName", "AWS::IAM::Group"),
        ("roleName", "AWS::IAM::Role"),
        ("policyArn", "AWS::IAM::Policy"),
        ("accessKeyId", "AWS::IAM::AccessKey"),
    ] {
        if let Some(name) = req.and_then(|r| r.get(key)).and_then(Value::as_str) {
            out.push(json!({ "ResourceType": kind, "ResourceName": name }));
        }
    }
    if let Some(k) = str_field(record, &["responseElements", "accessKey", "accessKeyId"]) {
        out.push(json!({ "ResourceType": "AWS::IAM::AccessKey", "ResourceName": k }));
    }
    out
}

pub(crate) fn any_string_equals(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Array(a) => a.iter().any(|x| any_string_equals(x, want)),
        Value::Object(m) => m.values().any(|x| any_string_equals(x, want)),
        _ => false,
    }
}

pub(crate) fn read_only(record: &Value) -> bool {
    match record.get("readOnly") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

pub(crate) fn matches_attribute(record: &Value, key: &str, value: &str) -> bool {
    match key {
        "EventId" => str_field(record, &["eventID"]) == Some(value),
        "EventName" => str_field(record, &["eventName"]) == Some(value),
        "EventSource" => str_field(record, &["eventSource"]) == Some(value),
        "Username" => summary_username(record).as_deref() == Some(value),
        "AccessKeyId" => str_field(record, &["userIdentity", "accessKeyId"]) == Some(value),
        "ReadOnly" => read_only(record).to_string() == value.to_ascii_lowercase(),
        "ResourceName" => {
            record
                .get("requestParameters")
                .is_some_and(|r| any_string_equals(r, value))
                || resources(record)
                    .iter()
                    .any(|r| r.get("ResourceName").and_then(Value::as_str) == Some(value))
        }
        "ResourceType" => resources(record)
            .iter()
            .any(|r| r.get("ResourceType").and_then(Value::as_str) == Some(value)),
        _ => false,
    }
}

pub(crate) const ATTRIBUTE_KEYS: &[&str] = &[
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
];

pub(crate) fn lookup_summary(record: &Value, time: DateTime<Utc>) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            m.insert(k.to_string(), json!(v));
        }
    };
    put("EventId", str_field(record, &["eventID"]));
    put("EventName", str_field(record, &["eventName"]));
    put(
        "AccessKeyId",
        str_field(record, &["userIdentity", "accessKeyId"]),
    );
    put("EventSource", str_field(record, &["eventSource"]));
    put("Username", summary_username(record).as_deref());
    m.insert(
        "ReadOnly".into(),
        json!(if read_only(record) { "true" } else { "false" }),
    );
    m.insert("EventTime".into(), json!(time.timestamp()));
    m.insert("Resources".into(), Value::Array(resources(record)));
    m.insert("CloudTrailEvent".into(), json!(record.to_string()));
    Value::Object(m)
}

/// Binds a NextToken to the query it continues.
pub(crate) fn fingerprint(
    account: &str,
    start: Option<i64>,
    end: Option<i64>,
    attr: &Option<(String, String)>,
) -> u64 {
    // DefaultHasher::new() is deterministic within one build, which is all a token needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (account, start, end, attr).hash(&mut h);
    h.finish()
}

pub(crate) fn encode_token(snapshot: u64, offset: usize, fp: u64) -> String {
    format!("v1.{snapshot:x}.{offset:x}.{fp:016x}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn decode_token(token: &str) -> Option<(u64, usize, u64)> {
    if token.len() % 2 != 0 || token.len() > 256 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let mut it = s.split('.');
    if it.next()? != "v1" {
        return None;
    }
    let snapshot = u64::from_str_radix(it.next()?, 16).ok()?;
    let offset = usize::from_str_radix(it.next()?, 16).ok()?;
    let fp = u64::from_str_radix(it.next()?, 16).ok()?;
    it.next().is_none().then_some((snapshot, offset, fp))
}

pub(crate) async fn lookup_events(
    st: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<Body> {
    let bad = |kind: &str, msg: &str| aws_error(StatusCode::BAD_REQUEST, kind, msg);
    if st.lookup_denied.load(std::sync::atomic::Ordering::SeqCst) {
        return bad(
            "AccessDeniedException",
            "User is not authorized to perform: cloudtrail:LookupEvents because no identity-based policy allows the cloudtrail:LookupEvents action",
        );
    }
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return bad(
                    "SerializationException",
                    "request body must be a JSON object",
                )
            }
            Err(e) => {
                return bad(
                    "SerializationException",
                    &format!("request body is not valid JSON: {e}"),
                )
            }
        }
    };
    let start = match time_param(req.get("StartTime"), "StartTime") {
        Ok(t) => t,
        Err(e) => return bad("InvalidTimeRangeException", &e),
    };
    let end = match time_param(req.get("EndTime"), "EndTime") {
        Ok(t) => t,
        Err(e) => return bad("InvalidTimeRangeException", &e),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return bad(
                "InvalidTimeRangeException",
                "StartTime must be before EndTime",
            );
        }
    }
    let attr = match req.get("LookupAttributes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) if a.len() == 1 => {
            let key = a[0].get("AttributeKey").and_then(Value::as_str);
            let value = a[0].get("AttributeValue").and_then(Value::as_str);
            match (key, value) {
                (Some(k), Some(v)) if ATTRIBUTE_KEYS.contains(&k) => {
                    Some((k.to_string(), v.to_string()))
                }
                _ => {
                    return bad(
                        "InvalidLookupAttributesException",
                        &format!(
                            "a lookup attribute needs an AttributeKey (one of {}) and an AttributeValue",
                            ATTRIBUTE_KEYS.join(", ")
                        ),
                    )
                }
            }
        }
        Some(Value::Array(_)) => {
            return bad(
                "InvalidLookupAttributesException",
                "You cannot specify more than one lookup attribute.",
            )
        }
        Some(_) => {
            return bad(
                "InvalidLookupAttributesException",
                "LookupAttributes must be a list",
            )
        }
    };
    let max = match req.get("MaxResults") {
        None | Some(Value::Null) => MAX_RESULTS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_RESULTS).contains(&n) => n,
            _ => {
                return bad(
                    "InvalidMaxResultsException",
                    "MaxResults must be between 1 and 50",
                )
            }
        },
    } as usize;

    let identity = resolve_identity(st, headers).await;
    let fp = fingerprint(&identity.account, start, end, &attr);
    let token = match req.get("NextToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => match decode_token(t) {
            Some((snapshot, offset, tfp)) if tfp == fp => Some((snapshot, offset)),
            Some(_) => {
                return bad(
                    "InvalidNextTokenException",
                    "The NextToken does not belong to this query: repeat the query's StartTime, EndTime and LookupAttributes",
                )
            }
            None => return bad("InvalidNextTokenException", "Invalid NextToken."),
        },
        Some(_) => return bad("InvalidNextTokenException", "NextToken must be a string"),
    };

    let now = Instant::now();
    let (events, next) = {
        let store = st.store();
        let empty = Vec::new();
        let all = store.accounts.get(&identity.account).unwrap_or(&empty);
        let (snapshot, offset) = match token {
            Some(t) => t,
            None => {
                let visible = all
                    .iter()
                    .filter(|e| e.recorded_at + st.delay <= now)
                    .map(|e| e.seq)
                    .max()
                    .unwrap_or(0);
                (visible, 0)
            }
        };
        let mut hits: Vec<&Stored> = all
            .iter()
            .filter(|e| e.seq <= snapshot)
            .filter(|e| start.is_none_or(|s| e.time.timestamp() >= s))
            .filter(|e| end.is_none_or(|x| e.time.timestamp() <= x))
            .filter(|e| {
                attr.as_ref()
                    .is_none_or(|(k, v)| matches_attribute(&e.record, k, v))
            })
            .collect();
        hits.sort_by(|a, b| b.time.cmp(&a.time).then(b.seq.cmp(&a.seq)));
        let page: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(max)
            .map(|e| lookup_summary(&e.record, e.time))
            .collect();
        let next = (offset + max < hits.len()).then(|| encode_token(snapshot, offset + max, fp));
        (page, next)
    };
    let mut out = json!({ "Events": events });
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Body::from(out.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
