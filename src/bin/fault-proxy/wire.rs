//! HTTP/1.1 on the wire: reading a request, forwarding it to moto, writing an answer or an
//! IAM error, resetting a connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 message read from a stream: the head (start line and headers, without the
/// blank line) and the body.
pub(crate) struct Message {
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Message {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub(crate) fn start_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The head with these headers left out.
    pub(crate) fn head_without(&self, drop: &[&str]) -> Vec<String> {
        self.head
            .lines()
            .enumerate()
            .filter(|(i, l)| {
                *i == 0
                    || !l
                        .split_once(':')
                        .is_some_and(|(k, _)| drop.iter().any(|d| k.trim().eq_ignore_ascii_case(d)))
            })
            .map(|(_, l)| l.to_string())
            .collect()
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Read one request from `conn` (`buf` holds bytes already read). `None` at a clean EOF.
pub(crate) async fn read_request(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<Message>, String> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = find_blank_line(buf) {
            break i;
        }
        let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("the client closed in the middle of a request".into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut msg = Message {
        head,
        body: Vec::new(),
    };
    if msg
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        return Err("chunked request bodies are not supported".into());
    }
    let len: usize = msg
        .header("content-length")
        .map(|v| v.parse().map_err(|_| format!("bad Content-Length {v:?}")))
        .transpose()?
        .unwrap_or(0);
    let start = end + 4;
    while buf.len() < start + len {
        let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the client closed in the middle of a request body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    msg.body = buf[start..start + len].to_vec();
    buf.drain(..start + len);
    Ok(Some(msg))
}

/// Decode a chunked body (moto answers with a length, but be safe).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[i + 2..];
        if size == 0 || raw.len() < size {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

/// Send `req` to moto on a fresh connection and read its whole answer.
pub(crate) async fn forward(upstream: &str, req: &Message) -> Result<Message, String> {
    let mut up = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("cannot reach the upstream {upstream}: {e}"))?;
    let mut head = req.head_without(&["connection", "keep-alive", "proxy-connection"]);
    head.push("Connection: close".into());
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&req.body);
    up.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let end = find_blank_line(&raw).ok_or("the upstream answer has no header end")?;
    let mut resp = Message {
        head: String::from_utf8_lossy(&raw[..end]).into_owned(),
        body: raw[end + 4..].to_vec(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        resp.body = dechunk(&resp.body);
    } else if let Some(len) = resp.header("content-length").and_then(|v| v.parse().ok()) {
        resp.body.truncate(len);
    }
    Ok(resp)
}

/// The answer bytes: `resp`'s status and headers with a `Content-Length` for `body`.
pub(crate) fn answer_bytes(resp: &Message, body: &[u8]) -> Vec<u8> {
    let mut head = resp.head_without(&["content-length", "transfer-encoding", "connection"]);
    head.push(format!("Content-Length: {}", body.len()));
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

pub(crate) fn error_answer(
    status: &str,
    code: &str,
    message: &str,
    extra: Option<String>,
    json: bool,
) -> Vec<u8> {
    let (content_type, body) = if json {
        // The JSON protocols (Secrets Manager, SSM): `__type` and `message`, and the
        // code in `x-amzn-ErrorType` too.
        (
            format!("application/x-amz-json-1.1\r\nx-amzn-ErrorType: {code}"),
            serde_json::json!({ "__type": code, "message": message }).to_string(),
        )
    } else {
        (
            "text/xml".to_string(),
            format!(
                "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                if status.starts_with('4') { "Sender" } else { "Receiver" },
                uuid::Uuid::new_v4()
            ),
        )
    };
    let head = Message {
        head: format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}{}",
            extra.map(|h| format!("\r\n{h}")).unwrap_or_default()
        ),
        body: Vec::new(),
    };
    answer_bytes(&head, body.as_bytes())
}

/// The operation of a request: `Action=...` of a query-protocol body (IAM, STS), or the
/// part after the dot of the JSON protocols' `X-Amz-Target` header
/// (`secretsmanager.CreateSecret`, `AmazonSSM.PutParameter`).
pub(crate) fn action_of(req: &Message) -> Option<String> {
    if let Some(target) = req.header("x-amz-target") {
        return target
            .rsplit_once('.')
            .map(|(_, op)| op.to_string())
            .filter(|op| !op.is_empty());
    }
    form_urlencoded::parse(&req.body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
}

/// The request uses a JSON protocol (its errors are JSON, not XML).
pub(crate) fn is_json(req: &Message) -> bool {
    req.header("x-amz-target").is_some()
}

/// Drop the connection with a reset (RST) instead of a clean close.
// Deprecated because a non-zero linger blocks the thread on drop; a zero one does not
// (the kernel discards the buffers and sends RST at once).
#[allow(deprecated)]
pub(crate) fn reset(conn: TcpStream) {
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }

    #[test]
    fn operations_of_both_protocols() {
        let msg = |head: &str, body: &str| Message {
            head: head.to_string(),
            body: body.as_bytes().to_vec(),
        };
        let table = [
            (
                msg("POST / HTTP/1.1", "Action=CreateAccessKey&UserName=u"),
                Some("CreateAccessKey"),
                false,
            ),
            (
                msg(
                    "POST / HTTP/1.1\r\nX-Amz-Target: secretsmanager.CreateSecret",
                    "{}",
                ),
                Some("CreateSecret"),
                true,
            ),
            (
                msg(
                    "POST / HTTP/1.1\r\nx-amz-target: AmazonSSM.PutParameter",
                    "{}",
                ),
                Some("PutParameter"),
                true,
            ),
            (
                msg("POST / HTTP/1.1\r\nX-Amz-Target: nodot", "{}"),
                None,
                true,
            ),
            (msg("GET / HTTP/1.1", ""), None, false),
        ];
        for (req, op, json) in table {
            assert_eq!(action_of(&req).as_deref(), op, "{}", req.head);
            assert_eq!(is_json(&req), json, "{}", req.head);
        }
        let e = String::from_utf8(error_answer(
            "400 Bad Request",
            "InvalidKeyId",
            "no such key",
            None,
            true,
        ))
        .unwrap();
        assert!(e.contains("x-amzn-ErrorType: InvalidKeyId"), "{e}");
        assert!(
            e.ends_with(r#"{"__type":"InvalidKeyId","message":"no such key"}"#),
            "{e}"
        );
    }
}
