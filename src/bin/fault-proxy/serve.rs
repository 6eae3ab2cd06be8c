//! One client connection: each request answered by moto, hit by a fault, or by an admin
//! endpoint.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fault::{Fault, Proxy};
use crate::wire::{
    action_of, answer_bytes, error_answer, forward, is_json, read_request, reset, Message,
};

enum Next {
    KeepGoing,
    Close,
}

pub(crate) async fn serve(proxy: Arc<Proxy>, mut conn: TcpStream) -> Result<(), String> {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut conn, &mut buf).await? else {
            return Ok(());
        };
        match handle(&proxy, &mut conn, req).await? {
            Next::KeepGoing => {}
            Next::Close => {
                reset(conn);
                return Ok(());
            }
        }
    }
}

async fn handle(proxy: &Proxy, conn: &mut TcpStream, req: Message) -> Result<Next, String> {
    let path = req.start_line().split(' ').nth(1).unwrap_or_default();
    if let Some(admin) = path.strip_prefix("/fault-proxy/") {
        let out = admin_answer(proxy, admin, &req.body);
        conn.write_all(&out).await.map_err(|e| e.to_string())?;
        return Ok(Next::KeepGoing);
    }
    let action = action_of(&req);
    let json = is_json(&req);
    let fault = proxy.decide(action.as_deref(), &req.body);
    let upstream = proxy.lock().upstream.clone();
    let send_upstream = || async {
        let r = forward(&upstream, &req).await;
        if r.is_ok() {
            proxy.lock().stats.forwarded += 1;
        }
        r
    };
    let answer = match fault {
        None => {
            let resp = send_upstream().await?;
            answer_bytes(&resp, &resp.body)
        }
        Some(Fault::Throttle) => {
            error_answer("400 Bad Request", "Throttling", "Rate exceeded", None, json)
        }
        Some(Fault::ThrottleRetryAfter) => error_answer(
            "400 Bad Request",
            "Throttling",
            "Rate exceeded",
            Some(format!("Retry-After: {}", proxy.retry_after)),
            json,
        ),
        Some(Fault::E500) => error_answer(
            "500 Internal Server Error",
            "InternalFailure",
            "The request processing has failed because of an unknown error.",
            None,
            json,
        ),
        Some(Fault::E503) => error_answer(
            "503 Service Unavailable",
            "ServiceUnavailable",
            "Service is unable to handle request.",
            None,
            json,
        ),
        Some(Fault::Reset) => return Ok(Next::Close),
        Some(Fault::AppliedThen500) => {
            send_upstream().await?;
            error_answer(
                "500 Internal Server Error",
                "InternalFailure",
                "The request processing has failed because of an unknown error.",
                None,
                json,
            )
        }
        Some(Fault::AppliedThenReset) => {
            send_upstream().await?;
            return Ok(Next::Close);
        }
        Some(Fault::Slow) => {
            let resp = send_upstream().await?;
            tokio::time::sleep(proxy.slow).await;
            answer_bytes(&resp, &resp.body)
        }
        Some(Fault::Truncated) => {
            let resp = send_upstream().await?;
            answer_bytes(&resp, &resp.body[..resp.body.len() / 2])
        }
        Some(Fault::NonXml) => {
            let page = Message {
                head: "HTTP/1.1 200 OK\r\nContent-Type: text/html".into(),
                body: Vec::new(),
            };
            answer_bytes(
                &page,
                b"<html><body><h1>Gateway</h1>upstream is busy</body></html>",
            )
        }
        // What Secrets Manager and SSM answer when the KMS key of a secret or a
        // SecureString does not exist (or may not be used): nothing is stored.
        Some(Fault::KmsEncryptionFailure) => error_answer(
            "400 Bad Request",
            "EncryptionFailure",
            "Secrets Manager can't encrypt the secret value with the KMS key given: it was not found",
            None,
            json,
        ),
        Some(Fault::KmsInvalidKeyId) => error_answer(
            "400 Bad Request",
            "InvalidKeyId",
            "The KMS key of the parameter was not found",
            None,
            json,
        ),
        // What STS answers when the role's trust policy does not allow the caller (or the
        // role does not exist), and Organizations when the caller may not list accounts.
        Some(Fault::AccessDenied) => error_answer(
            "403 Forbidden",
            if json { "AccessDeniedException" } else { "AccessDenied" },
            "User is not authorized to perform this operation",
            None,
            json,
        ),
        Some(Fault::Hang) => {
            // Never answer; wait until the client gives up and closes.
            let mut sink = [0u8; 1024];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
            return Ok(Next::Close);
        }
    };
    conn.write_all(&answer).await.map_err(|e| e.to_string())?;
    Ok(Next::KeepGoing)
}

fn admin_answer(proxy: &Proxy, admin: &str, body: &[u8]) -> Vec<u8> {
    let ok = |ct: &str, b: String| {
        answer_bytes(
            &Message {
                head: format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}"),
                body: Vec::new(),
            },
            b.as_bytes(),
        )
    };
    let bad = |msg: String| {
        answer_bytes(
            &Message {
                head: "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain".into(),
                body: Vec::new(),
            },
            msg.as_bytes(),
        )
    };
    let text = String::from_utf8_lossy(body);
    match admin.split('?').next().unwrap_or_default() {
        "stats" => ok("application/json", proxy.stats_json()),
        "script" => {
            let mut parsed = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Some((action, fault)) = line.trim().split_once(' ') else {
                    return bad(format!("script line {line:?} is not `ACTION FAULT`"));
                };
                match Fault::parse(fault) {
                    Ok(f) => parsed.push((action.to_string(), f)),
                    Err(e) => return bad(e),
                }
            }
            let n = parsed.len();
            proxy.lock().scripts.extend(parsed);
            ok("text/plain", format!("{n} scripted\n"))
        }
        "refuse" => {
            let mut parsed = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Some((action, needle)) = line.trim().split_once(' ') else {
                    return bad(format!("refuse line {line:?} is not `ACTION TEXT`"));
                };
                parsed.push((action.to_string(), needle.trim().to_string()));
            }
            let n = parsed.len();
            proxy.lock().refusals.extend(parsed);
            ok("text/plain", format!("{n} refusals\n"))
        }
        "rate" => match text.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => {
                proxy.lock().rate = r;
                ok("text/plain", format!("rate {r}\n"))
            }
            _ => bad(format!("rate {text:?} is not a probability from 0 to 1")),
        },
        other => bad(format!("unknown admin endpoint /fault-proxy/{other}")),
    }
}
