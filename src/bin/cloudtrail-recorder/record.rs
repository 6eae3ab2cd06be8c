//! Building a CloudTrail-shaped record from a Query-protocol IAM call and moto's answer.

use super::*;

/// Lower-camel-cases a parameter name the way CloudTrail does (`UserName` → `userName`).
pub(crate) fn lower_camel(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

pub(crate) fn param_value(name: &str, v: &str) -> Value {
    if BOOL_PARAMS.contains(&name) {
        match v {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    if INT_PARAMS.contains(&name) {
        if let Ok(n) = v.parse::<i64>() {
            return json!(n);
        }
    }
    json!(v)
}

/// `requestParameters` from Query parameters: names lower-camel-cased, `X.member.N[.Sub]`
/// lists turned into arrays, secrets left out. `null` when nothing is left.
pub(crate) fn request_parameters(params: &[(String, String)]) -> Value {
    let mut obj = Map::new();
    // list name → index → element (scalar, or object of fields)
    let mut lists: BTreeMap<String, BTreeMap<u64, Value>> = BTreeMap::new();
    for (k, v) in params {
        if k == "Action" || k == "Version" || SECRET_PARAMS.contains(&k.as_str()) {
            continue;
        }
        let parts: Vec<&str> = k.split('.').collect();
        let index = parts.get(2).and_then(|i| i.parse::<u64>().ok());
        match (parts.as_slice(), index) {
            ([name, "member", _], Some(i)) => {
                lists
                    .entry(lower_camel(name))
                    .or_default()
                    .insert(i, json!(v));
            }
            ([name, "member", _, field], Some(i)) => {
                let el = lists
                    .entry(lower_camel(name))
                    .or_default()
                    .entry(i)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = el {
                    m.insert(lower_camel(field), json!(v));
                }
            }
            _ => {
                let key = parts
                    .iter()
                    .map(|p| lower_camel(p))
                    .collect::<Vec<_>>()
                    .join(".");
                obj.insert(key, param_value(k, v));
            }
        }
    }
    for (name, els) in lists {
        obj.insert(name, Value::Array(els.into_values().collect()));
    }
    if obj.is_empty() {
        Value::Null
    } else {
        Value::Object(obj)
    }
}

/// The text between `<tag>` and `</tag>` (first occurrence; no attributes on `tag`).
pub(crate) fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

pub(crate) fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// CloudTrail writes dates inside `responseElements` as "Aug 1, 2024 1:33:28 PM".
pub(crate) fn cloudtrail_date(s: &str) -> String {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t
            .with_timezone(&Utc)
            .format("%b %-d, %Y %-I:%M:%S %p")
            .to_string(),
        Err(_) => s.to_string(),
    }
}

/// Copies the XML fields `(xml tag, json key)` found inside `section` into an object.
pub(crate) fn xml_object(section: &str, fields: &[(&str, &str)]) -> Map<String, Value> {
    let mut m = Map::new();
    for (tag, key) in fields {
        if let Some(v) = xml_tag(section, tag) {
            let v = xml_unescape(v);
            let v = match *tag {
                "CreateDate" | "UpdateDate" => json!(cloudtrail_date(&v)),
                "PasswordResetRequired" | "IsAttachable" => json!(v == "true"),
                "AttachmentCount" => v.parse::<i64>().map(|n| json!(n)).unwrap_or(json!(v)),
                _ => json!(v),
            };
            m.insert((*key).to_string(), v);
        }
    }
    m
}

/// `responseElements` for the calls whose real records carry them; `null` otherwise. Never
/// contains a secret access key.
pub(crate) fn response_elements(action: &str, xml: &str, request: &Value) -> Value {
    let out = match action {
        "CreateUser" => xml_tag(xml, "User").map(|u| {
            let mut m = xml_object(
                u,
                &[
                    ("Path", "path"),
                    ("UserName", "userName"),
                    ("UserId", "userId"),
                    ("Arn", "arn"),
                    ("CreateDate", "createDate"),
                ],
            );
            if let Some(tags) = request.get("tags") {
                m.insert("tags".into(), tags.clone());
            }
            json!({ "user": m })
        }),
        "CreateAccessKey" => xml_tag(xml, "AccessKey").map(|k| {
            json!({ "accessKey": xml_object(
                k,
                &[
                    ("AccessKeyId", "accessKeyId"),
                    ("Status", "status"),
                    ("UserName", "userName"),
                    ("CreateDate", "createDate"),
                ],
            ) })
        }),
        "CreateLoginProfile" => xml_tag(xml, "LoginProfile").map(|p| {
            json!({ "loginProfile": xml_object(
                p,
                &[
                    ("CreateDate", "createDate"),
                    ("PasswordResetRequired", "passwordResetRequired"),
                    ("UserName", "userName"),
                ],
            ) })
        }),
        "CreateGroup" => xml_tag(xml, "Group").map(|g| {
            json!({ "group": xml_object(
                g,
                &[
                    ("Path", "path"),
                    ("GroupName", "groupName"),
                    ("GroupId", "groupId"),
                    ("Arn", "arn"),
                    ("CreateDate", "createDate"),
                ],
            ) })
        }),
        "CreatePolicy" => xml_tag(xml, "Policy").map(|p| {
            json!({ "policy": xml_object(
                p,
                &[
                    ("PolicyName", "policyName"),
                    ("DefaultVersionId", "defaultVersionId"),
                    ("PolicyId", "policyId"),
                    ("Path", "path"),
                    ("Arn", "arn"),
                    ("AttachmentCount", "attachmentCount"),
                    ("IsAttachable", "isAttachable"),
                    ("CreateDate", "createDate"),
                    ("UpdateDate", "updateDate"),
                ],
            ) })
        }),
        _ => None,
    };
    out.unwrap_or(Value::Null)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn build_record(
    identity: &Identity,
    access_key: Option<&str>,
    action: &str,
    params: &[(String, String)],
    xml: &str,
    request_id: &str,
    source_ip: &str,
    user_agent: &str,
) -> Value {
    let request = request_parameters(params);
    let response = response_elements(action, xml, &request);
    json!({
        "eventVersion": "1.09",
        "userIdentity": identity.user_identity(access_key),
        "eventTime": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "eventSource": "iam.amazonaws.com",
        "eventName": action,
        "awsRegion": "us-east-1",
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": request,
        "responseElements": response,
        "requestID": request_id,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": identity.account,
        "eventCategory": "Management",
    })
}
