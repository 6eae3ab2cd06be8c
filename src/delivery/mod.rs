//! Delivering a rotated access key to its consumer: one Secrets Manager secret per user
//! (a new version per rotation; the previous stays readable as `AWSPREVIOUS`) or one SSM
//! `SecureString` parameter. Also reads back which key is stored (never returning the
//! secret), for crash recovery.
//!
//! The secret access key lives only in a [`SecretKey`]: not `Clone`, not `Serialize`,
//! printed as `[redacted]`, zeroed on drop. Errors never carry it: every error of a call
//! that sent it is checked and scrubbed. (Copies the AWS SDK makes of a request body are
//! the SDK's; they are dropped with the request.)

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::aws::{aws_error, Clients};
use crate::config::Delivery;
use crate::error::{Error, Result};

/// The user tag name on every secret iam-warden stores.
pub const SECRET_USER_TAG: &str = "iam-warden/user";

/// A secret access key, in memory only between CreateAccessKey and the store call.
pub struct SecretKey(Zeroizing<String>);

impl SecretKey {
    pub fn new(secret: String) -> SecretKey {
        SecretKey(Zeroizing::new(secret))
    }

    /// The secret itself: only for the store call (and tests).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A new key to deliver.
pub struct NewKey<'a> {
    pub user: &'a str,
    pub access_key_id: &'a str,
    pub secret: &'a SecretKey,
    pub created: DateTime<Utc>,
}

/// Where to deliver it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub delivery: Delivery,
    /// The secret or parameter name (`rotation.name_template` rendered for the user).
    pub name: &'a str,
    pub kms_key_id: Option<&'a str>,
    /// The owner tag's name (`notifications.owner_tag`) and the user's owner, if any.
    pub owner_tag: &'a str,
    pub owner: Option<&'a str>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "AccessKeyId")]
    access_key_id: &'a str,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: &'a str,
    #[serde(rename = "UserName")]
    user_name: &'a str,
    #[serde(rename = "CreateDate")]
    create_date: String,
}

/// The JSON stored: `{AccessKeyId, SecretAccessKey, UserName, CreateDate}`, in a buffer
/// that is zeroed on drop.
fn body(key: &NewKey<'_>) -> Result<Zeroizing<String>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(1024));
    serde_json::to_writer(
        &mut *buf,
        &Body {
            access_key_id: key.access_key_id,
            secret_access_key: key.secret.expose(),
            user_name: key.user,
            create_date: key.created.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    )
    .map_err(|_| Error::Other("cannot encode the secret's JSON".into()))?;
    let bytes = std::mem::take(&mut *buf);
    String::from_utf8(bytes)
        .map(Zeroizing::new)
        .map_err(|_| Error::Other("the secret's JSON is not UTF-8".into()))
}

/// An error of a call that carried the secret, without it (and on one line).
fn scrub(e: Error, secret: &SecretKey) -> Error {
    let text = e.to_string();
    if secret.expose().is_empty() || !text.contains(secret.expose()) {
        return e;
    }
    Error::Other(text.replace(secret.expose(), "[redacted]"))
}

/// Store `key` at `target` (Secrets Manager: CreateSecret the first time, PutSecretValue
/// after; SSM: PutParameter with Overwrite).
pub async fn store(clients: &Clients, target: &Target<'_>, key: &NewKey<'_>) -> Result<()> {
    let json = body(key)?;
    let r = match target.delivery {
        Delivery::SecretsManager => store_secret(clients, target, key.user, &json).await,
        Delivery::Ssm => store_parameter(clients, target, &json).await,
        Delivery::None => Err(Error::Other(
            "rotation.delivery = \"none\": iam-warden does not create keys".into(),
        )),
    };
    r.map_err(|e| kms_problem(scrub(e, key.secret), target))
}

/// The AWS error codes that say the KMS key of the secret or parameter cannot be used
/// (missing, disabled, or not allowed): Secrets Manager's `EncryptionFailure`, SSM's
/// `InvalidKeyId`, and KMS's own codes passed through.
fn is_kms_code(code: &str) -> bool {
    matches!(
        code,
        "EncryptionFailure"
            | "InvalidKeyId"
            | "NotFoundException"
            | "DisabledException"
            | "KMSInvalidStateException"
            | "KMSNotFoundException"
            | "KMSDisabledException"
            | "KMSAccessDeniedException"
    )
}

/// An error about the KMS key as one line that names the key and how to fix it; any
/// other error as it is.
fn kms_problem(e: Error, target: &Target<'_>) -> Error {
    let Error::Aws {
        operation,
        code: Some(code),
        message,
        ..
    } = &e
    else {
        return e;
    };
    if !is_kms_code(code) {
        return e;
    }
    let (service, managed) = match target.delivery {
        Delivery::Ssm => ("SSM", "alias/aws/ssm"),
        _ => ("Secrets Manager", "alias/aws/secretsmanager"),
    };
    let key = match target.kms_key_id {
        Some(k) => format!("KMS key {k:?} (rotation.kms_key_id)"),
        None => format!("AWS-managed KMS key {managed}"),
    };
    Error::Other(format!(
        "{service} {operation} cannot use the {key} ({code}: {message}): check that the key exists in this account and region, is enabled and that iam-warden may use it (kms:GenerateDataKey, kms:Encrypt, kms:Decrypt), or set rotation.kms_key_id to a key that does (unset: the AWS-managed key)"
    ))
}

fn sm_tag(k: &str, v: &str) -> aws_sdk_secretsmanager::types::Tag {
    aws_sdk_secretsmanager::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
}

async fn store_secret(
    clients: &Clients,
    target: &Target<'_>,
    user: &str,
    json: &Zeroizing<String>,
) -> Result<()> {
    let sm = clients.secretsmanager();
    let mut tags = vec![sm_tag(SECRET_USER_TAG, user)];
    if let Some(o) = target.owner {
        tags.push(sm_tag(target.owner_tag, o));
    }
    let created = sm
        .create_secret()
        .name(target.name)
        .description("Access key of an IAM user, rotated by iam-warden")
        .secret_string(json.as_str())
        .set_kms_key_id(target.kms_key_id.map(str::to_string))
        .set_tags(Some(tags.clone()))
        .send()
        .await
        .map_err(|e| aws_error("secretsmanager", "CreateSecret", e));
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.aws_code() == Some("ResourceExistsException") => {
            sm.put_secret_value()
                .secret_id(target.name)
                .secret_string(json.as_str())
                .send()
                .await
                .map_err(|e| aws_error("secretsmanager", "PutSecretValue", e))?;
            // The owner may have changed since the secret was made.
            sm.tag_resource()
                .secret_id(target.name)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| aws_error("secretsmanager", "TagResource", e))?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn store_parameter(
    clients: &Clients,
    target: &Target<'_>,
    json: &Zeroizing<String>,
) -> Result<()> {
    clients
        .ssm()
        .put_parameter()
        .name(target.name)
        .description("Access key of an IAM user, rotated by iam-warden")
        .value(json.as_str())
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .set_key_id(target.kms_key_id.map(str::to_string))
        .send()
        .await
        .map_err(|e| aws_error("ssm", "PutParameter", e))?;
    Ok(())
}

#[derive(Deserialize)]
struct StoredId {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
}

/// The AccessKeyId stored at `name` (`None`: nothing stored yet). The secret is read (it
/// is one JSON document) but never returned, and the buffer is zeroed.
pub async fn stored_key_id(
    clients: &Clients,
    delivery: Delivery,
    name: &str,
) -> Result<Option<String>> {
    let value: Zeroizing<String> = match delivery {
        Delivery::SecretsManager => {
            match clients
                .secretsmanager()
                .get_secret_value()
                .secret_id(name)
                .send()
                .await
                .map_err(|e| aws_error("secretsmanager", "GetSecretValue", e))
            {
                Ok(mut out) => Zeroizing::new(out.secret_string.take().unwrap_or_default()),
                Err(e) if e.aws_code() == Some("ResourceNotFoundException") => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Delivery::Ssm => {
            match clients
                .ssm()
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| aws_error("ssm", "GetParameter", e))
            {
                Ok(mut out) => Zeroizing::new(
                    out.parameter
                        .take()
                        .and_then(|mut p| p.value.take())
                        .unwrap_or_default(),
                ),
                Err(e) if e.aws_code() == Some("ParameterNotFound") => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Delivery::None => return Ok(None),
    };
    match serde_json::from_str::<StoredId>(&value) {
        Ok(s) => Ok(Some(s.access_key_id)),
        // The error text could quote the document: say only where.
        Err(_) => Err(Error::Other(format!(
            "{name} does not hold iam-warden's JSON {{AccessKeyId, SecretAccessKey, UserName, CreateDate}}; rename or delete it, or change rotation.name_template"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_prints() {
        let s = SecretKey::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY".into());
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let key = NewKey {
            user: "u",
            access_key_id: "AKIAEXAMPLE0000001",
            secret: &s,
            created: DateTime::UNIX_EPOCH,
        };
        let b = body(&key).unwrap();
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["SecretAccessKey"], s.expose());
        assert_eq!(v["AccessKeyId"], "AKIAEXAMPLE0000001");
        assert_eq!(v["UserName"], "u");
        assert_eq!(v["CreateDate"], "1970-01-01T00:00:00Z");
        let e = scrub(Error::Other(format!("bad value {}", s.expose())), &s);
        assert_eq!(e.to_string(), "bad value [redacted]");
    }

    fn aws(code: &str) -> Error {
        Error::Aws {
            service: "secretsmanager",
            operation: "CreateSecret",
            code: Some(code.into()),
            message: "the key was not found".into(),
            hint: None,
            detail: "".into(),
            ambiguous: false,
        }
    }

    #[test]
    fn kms_errors_name_the_key_and_the_fix() {
        let target = |delivery, kms_key_id| Target {
            delivery,
            name: "iam-warden/u/access-key",
            kms_key_id,
            owner_tag: "iam-warden/owner",
            owner: None,
        };
        let missing = "arn:aws:kms:us-east-1:123456789012:key/0000-missing";
        let table = [
            (
                Delivery::SecretsManager,
                Some(missing),
                "EncryptionFailure",
                Some(missing),
            ),
            (
                Delivery::Ssm,
                Some("alias/gone"),
                "InvalidKeyId",
                Some("alias/gone"),
            ),
            (
                Delivery::SecretsManager,
                None,
                "EncryptionFailure",
                Some("alias/aws/secretsmanager"),
            ),
            (
                Delivery::SecretsManager,
                Some(missing),
                "AccessDeniedException",
                None,
            ),
            (Delivery::Ssm, Some(missing), "ParameterLimitExceeded", None),
        ];
        for (delivery, kms, code, named) in table {
            let text = kms_problem(aws(code), &target(delivery, kms)).to_string();
            assert!(!text.contains('\n'), "one line: {text}");
            match named {
                Some(k) => {
                    assert!(text.contains(k), "{code}: names the key: {text}");
                    assert!(
                        text.contains("rotation.kms_key_id"),
                        "{code}: the fix: {text}"
                    );
                    assert!(text.contains(code), "{text}");
                }
                None => assert!(
                    text.starts_with("AWS secretsmanager CreateSecret failed"),
                    "{code} unchanged: {text}"
                ),
            }
        }
    }
}
