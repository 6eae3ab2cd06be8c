//! Forwarding to moto, and recording the IAM writes that pass through with the caller's
//! identity.

use super::*;

pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// An IAM write call: (Action, all parameters in order).
pub(crate) fn iam_write_call(
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<(String, Vec<(String, String)>)> {
    iam_call(uri, headers, body).filter(|(action, _)| !is_read(action))
}

/// An IAM read call (changes nothing).
pub(crate) fn is_read(action: &str) -> bool {
    READ_PREFIXES.iter().any(|p| action.starts_with(p))
}

/// Any IAM call: (Action, all parameters in order).
pub(crate) fn iam_call(
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<(String, Vec<(String, String)>)> {
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(q) = uri.query() {
        params.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        params.extend(form_urlencoded::parse(body).into_owned());
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("Version").as_deref() != Some(IAM_VERSION) {
        return None;
    }
    let action = get("Action")?;
    if action.is_empty() {
        return None;
    }
    Some((action, params))
}

pub(crate) async fn proxy(
    st: &AppState,
    peer: SocketAddr,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    let call = if st.record_reads {
        iam_call(&parts.uri, &parts.headers, &body)
    } else {
        iam_write_call(&parts.uri, &parts.headers, &body)
    };
    let access_key = access_key_id(&parts.headers);
    // Resolve the caller before forwarding: the call may delete the very key it is signed with.
    let identity = match &call {
        Some(_) => Some(resolve_identity(st, &parts.headers).await),
        None => None,
    };

    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let uri: Uri = match format!("{}{}", st.upstream, path_and_query).parse() {
        Ok(u) => u,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("bad request URI: {e}")),
    };
    let mut up = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(uri);
    if let Some(h) = up.headers_mut() {
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name) {
                h.append(name.clone(), value.clone());
            }
        }
    }
    let up = match up.body(Full::new(body.clone())) {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("cannot forward request: {e}"),
            )
        }
    };
    let resp = match st.client.request(up).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("cloudtrail-recorder: upstream {} failed: {e}", st.upstream),
            );
        }
    };
    let (rparts, rbody) = resp.into_parts();
    let rbody = match rbody.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("cloudtrail-recorder: reading the upstream response failed: {e}"),
            )
        }
    };

    if let (Some((action, params)), Some(identity)) = (call, identity) {
        if rparts.status.is_success() {
            let xml = String::from_utf8_lossy(&rbody);
            let request_id = rparts
                .headers
                .get("x-amzn-requestid")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| xml_tag(&xml, "RequestId").map(xml_unescape))
                .unwrap_or_default();
            let user_agent = parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let mut record = build_record(
                &identity,
                access_key.as_deref(),
                &action,
                &params,
                &xml,
                &request_id,
                &peer.ip().to_string(),
                user_agent,
            );
            record["readOnly"] = Value::Bool(is_read(&action));
            apply_test_headers(&mut record, &parts.headers);
            st.store().push(&identity.account, record);
        }
    }

    let mut out = Response::builder().status(rparts.status);
    if let Some(h) = out.headers_mut() {
        for (name, value) in &rparts.headers {
            if !is_hop_by_hop(name) {
                h.append(name.clone(), value.clone());
            }
        }
    }
    out.body(Body::from(rbody)).unwrap_or_else(|e| {
        plain(
            StatusCode::BAD_GATEWAY,
            format!("bad upstream response: {e}"),
        )
    })
}

/// The access key id from a SigV4 `Authorization` header.
pub(crate) fn access_key_id(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (_, rest) = auth.split_once("Credential=")?;
    let akid = rest.split('/').next()?.trim();
    (!akid.is_empty()).then(|| akid.to_string())
}

/// The caller's identity, from the cache or from moto's STS GetCallerIdentity (see the file
/// header for why this works).
pub(crate) async fn resolve_identity(st: &AppState, headers: &HeaderMap) -> Identity {
    let akid = access_key_id(headers);
    if let Some(k) = &akid {
        if let Some(id) = st.identities().get(k) {
            return id.clone();
        }
    }
    let id = match get_caller_identity(st, akid.as_deref(), headers).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "GetCallerIdentity on upstream failed; attributing to moto's default account");
            Identity {
                account: "123456789012".into(),
                arn: "arn:aws:sts::123456789012:user/moto".into(),
                principal_id: akid.clone().unwrap_or_default(),
                kind: "Unknown",
                user_name: None,
                seen_at: Utc::now(),
            }
        }
    };
    if let Some(k) = akid {
        if id.kind != "Unknown" {
            st.identities().entry(k).or_insert_with(|| id.clone());
        }
    }
    id
}

pub(crate) async fn get_caller_identity(
    st: &AppState,
    akid: Option<&str>,
    headers: &HeaderMap,
) -> Result<Identity, String> {
    let uri: Uri = format!("{}/", st.upstream)
        .parse()
        .map_err(|e| format!("bad upstream URL: {e}"))?;
    let now = Utc::now();
    let mut req = hyper::Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header("x-amz-date", now.format("%Y%m%dT%H%M%SZ").to_string());
    if let Some(k) = akid {
        req = req.header(
            header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential={k}/{}/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
                now.format("%Y%m%d"),
                "0".repeat(64)
            ),
        );
    }
    if let Some(t) = headers.get("x-amz-security-token") {
        req = req.header("x-amz-security-token", t.clone());
    }
    let req = req
        .body(Full::new(Bytes::from_static(
            b"Action=GetCallerIdentity&Version=2011-06-15",
        )))
        .map_err(|e| format!("cannot build GetCallerIdentity: {e}"))?;
    let resp = st
        .client
        .request(req)
        .await
        .map_err(|e| format!("GetCallerIdentity: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GetCallerIdentity body: {e}"))?
        .to_bytes();
    let xml = String::from_utf8_lossy(&body);
    if !status.is_success() {
        return Err(format!("GetCallerIdentity answered {status}: {xml}"));
    }
    let field = |t: &str| {
        xml_tag(&xml, t)
            .map(xml_unescape)
            .ok_or_else(|| format!("GetCallerIdentity response has no <{t}>: {xml}"))
    };
    let account = field("Account")?;
    let arn = field("Arn")?;
    let principal_id = field("UserId")?;
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    let (kind, user_name) = if arn.starts_with("arn:aws:iam::") && resource.starts_with("user/") {
        let name = resource.rsplit('/').next().unwrap_or_default().to_string();
        ("IAMUser", Some(name))
    } else if resource.starts_with("assumed-role/") {
        ("AssumedRole", None)
    } else if resource == "root" {
        ("Root", None)
    } else {
        ("Unknown", None)
    };
    Ok(Identity {
        account,
        arn,
        principal_id,
        kind,
        user_name,
        seen_at: now,
    })
}

/// The `x-test-*` headers (see the file header of main.rs) applied to a record.
pub(crate) fn apply_test_headers(record: &mut Value, headers: &HeaderMap) {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(ip) = h("x-test-source-ip") {
        record["sourceIPAddress"] = json!(ip);
    }
    if let Some(vpce) = h("x-test-vpce") {
        record["vpcEndpointId"] = json!(vpce);
    }
    if let Some(svc) = h("x-test-invoked-by") {
        record["userIdentity"]["invokedBy"] = json!(svc);
    }
    if let Some(mfa) = h("x-test-mfa") {
        let attrs = json!({
            "creationDate": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            "mfaAuthenticated": mfa,
        });
        match record["userIdentity"].get_mut("sessionContext") {
            Some(ctx) => ctx["attributes"] = attrs,
            None => record["userIdentity"]["sessionContext"] = json!({ "attributes": attrs }),
        }
    }
}
