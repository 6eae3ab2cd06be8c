//! The baseline policy documents (AWS's documented deny-unless-MFA policy
//! `DenyAllExceptListedIfNoMFA` and a deny-unless-source-IP policy) and comparison by
//! meaning: IAM returns documents URL-encoded and reformatted, and `"a"` means `["a"]`.

use serde_json::{json, Value};

use crate::config::Config;
use crate::error::{Error, Result};

/// IAM's limit for a managed policy document (characters, whitespace excluded).
pub const MAX_MANAGED_POLICY_CHARS: usize = 6144;

/// Which baseline policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselinePolicy {
    Mfa,
    SourceIp,
}

/// A baseline policy as configured: name, group and the document it must have.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPolicy {
    pub kind: BaselinePolicy,
    pub name: String,
    pub group: String,
    pub document: Value,
}

impl DesiredPolicy {
    /// The document as sent to IAM (compact JSON).
    pub fn document_text(&self) -> String {
        self.document.to_string()
    }
}

/// The deny-unless-MFA policy (as AWS documents it): deny everything but the NotAction list unless the caller
/// authenticated with MFA.
pub fn mfa_document(not_actions: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyAllExceptListedIfNoMFA",
            "Effect": "Deny",
            "NotAction": not_actions,
            "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}
        }]
    })
}

/// The deny-unless-source-IP policy (as AWS documents it): deny every request from outside the allowed networks,
/// unless an AWS service makes it on the user's behalf.
pub fn source_ip_document(cidrs: &[String]) -> Value {
    source_ip_document_with(cidrs, &[], &[])
}

/// The same, with exceptions for calls through listed VPC endpoints (`aws:SourceVpce`) or
/// from listed VPCs (`aws:SourceVpc`). Such a call has no `aws:SourceIp`, so `NotIpAddress`
/// is true for it; the conditions of one statement are ANDed, so a
/// `StringNotEqualsIfExists` on the endpoint or VPC makes the deny false for the listed ones
/// and leaves it as it was for calls without the key (from the internet). With both lists
/// empty the document is the one above, unchanged.
pub fn source_ip_document_with(cidrs: &[String], vpces: &[String], vpcs: &[String]) -> Value {
    let trim = |l: &[String]| -> Vec<String> { l.iter().map(|c| c.trim().to_string()).collect() };
    let mut condition = json!({
        "NotIpAddress": {"aws:SourceIp": trim(cidrs)},
        "Bool": {"aws:ViaAWSService": "false"}
    });
    let mut vpc_keys = serde_json::Map::new();
    if !vpces.is_empty() {
        vpc_keys.insert("aws:SourceVpce".into(), json!(trim(vpces)));
    }
    if !vpcs.is_empty() {
        vpc_keys.insert("aws:SourceVpc".into(), json!(trim(vpcs)));
    }
    if !vpc_keys.is_empty() {
        condition["StringNotEqualsIfExists"] = Value::Object(vpc_keys);
    }
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyOutsideAllowedSourceIp",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": condition
        }]
    })
}

/// The enabled baseline policies. Refuses a document over IAM's size limit.
pub fn desired_policies(cfg: &Config) -> Result<Vec<DesiredPolicy>> {
    let b = &cfg.baseline;
    let mut out = Vec::new();
    if b.mfa_policy.enabled {
        out.push(DesiredPolicy {
            kind: BaselinePolicy::Mfa,
            name: b.mfa_policy.name.clone(),
            group: b.mfa_policy.group.clone(),
            document: mfa_document(&b.mfa_policy.allowed_without_mfa),
        });
    }
    if b.source_ip_policy.enabled {
        out.push(DesiredPolicy {
            kind: BaselinePolicy::SourceIp,
            name: b.source_ip_policy.name.clone(),
            group: b.source_ip_policy.group.clone(),
            document: source_ip_document_with(
                &b.source_ip_policy.allowed_cidrs,
                &b.source_ip_policy.allowed_vpc_endpoints,
                &b.source_ip_policy.allowed_vpcs,
            ),
        });
    }
    for p in &out {
        let len = p
            .document_text()
            .chars()
            .filter(|c| !c.is_whitespace())
            .count();
        if len > MAX_MANAGED_POLICY_CHARS {
            return Err(Error::PolicyTooLarge {
                name: p.name.clone(),
                len,
                key: match p.kind {
                    BaselinePolicy::Mfa => "mfa_policy.allowed_without_mfa",
                    BaselinePolicy::SourceIp => "source_ip_policy.allowed_cidrs",
                },
            });
        }
    }
    Ok(out)
}

/// A canonical form: every string value becomes a sorted, de-duplicated list (a string
/// and a one-element list mean the same in IAM), statement lists are sorted, and `Sid`s
/// (labels without meaning) are dropped.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::Array(vec![Value::String(s.clone())]),
        Value::Bool(b) => Value::Array(vec![Value::String(b.to_string())]),
        Value::Number(n) => Value::Array(vec![Value::String(n.to_string())]),
        Value::Array(items) => {
            let mut flat: Vec<Value> = Vec::new();
            for it in items {
                match canonical(it) {
                    Value::Array(inner) if inner.iter().all(Value::is_string) => flat.extend(inner),
                    other => flat.push(other),
                }
            }
            flat.sort_by_key(|x| x.to_string());
            flat.dedup();
            Value::Array(flat)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "Sid")
                .map(|(k, v)| match (k.as_str(), v) {
                    // A single statement object means a one-statement list.
                    ("Statement", Value::Object(_)) => {
                        (k.clone(), canonical(&Value::Array(vec![v.clone()])))
                    }
                    _ => (k.clone(), canonical(v)),
                })
                .collect(),
        ),
        Value::Null => Value::Null,
    }
}

/// Do two policy documents mean the same?
pub fn same_meaning(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ARTICLE_MFA_NOT_ACTIONS;
    use crate::inventory::decode_policy_document;

    fn article_actions() -> Vec<String> {
        ARTICLE_MFA_NOT_ACTIONS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn mfa_document_is_the_articles() {
        // AWS's documented deny-unless-MFA policy (only its Deny statement), verbatim.
        let article: Value = serde_json::from_str(
            r#"{
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyAllExceptListedIfNoMFA",
                    "Effect": "Deny",
                    "NotAction": [
                        "iam:CreateVirtualMFADevice",
                        "iam:EnableMFADevice",
                        "iam:GetUser",
                        "iam:ListMFADevices",
                        "iam:ListVirtualMFADevices",
                        "iam:ResyncMFADevice",
                        "sts:GetSessionToken"
                    ],
                    "Resource": "*",
                    "Condition": {
                        "BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}
                    }
                }
            ]
        }"#,
        )
        .unwrap();
        assert_eq!(mfa_document(&article_actions()), article);
    }

    #[test]
    fn source_ip_document_matches_the_article_in_meaning() {
        let article: Value = serde_json::from_str(
            r#"{
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {
                    "NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]},
                    "Bool": {"aws:ViaAWSService": "false"}
                }
            }
        }"#,
        )
        .unwrap();
        let ours = source_ip_document(&["203.0.113.0/24".into(), "192.0.2.0/24".into()]);
        assert!(same_meaning(&ours, &article));
        assert!(!same_meaning(
            &source_ip_document(&["192.0.2.0/24".into()]),
            &article
        ));
    }

    #[test]
    fn meaning_ignores_form_but_not_content() {
        let a = mfa_document(&article_actions());
        // URL-encoded round trip, as IAM returns it.
        let enc: String = percent_encoding::utf8_percent_encode(
            &a.to_string(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        assert!(same_meaning(&a, &decode_policy_document(&enc).unwrap()));
        // Reordered actions and a different Sid mean the same.
        let mut rev = article_actions();
        rev.reverse();
        let mut b = mfa_document(&rev);
        b["Statement"][0]["Sid"] = json!("Other");
        assert!(same_meaning(&a, &b));
        // One more allowed action, or Bool instead of BoolIfExists, is a different policy.
        let mut more = article_actions();
        more.push("iam:ChangePassword".into());
        assert!(!same_meaning(&a, &mfa_document(&more)));
        let mut c = a.clone();
        c["Statement"][0]["Condition"] = json!({"Bool": {"aws:MultiFactorAuthPresent": "false"}});
        assert!(!same_meaning(&a, &c));
        let mut d = a.clone();
        d["Statement"][0]["Effect"] = json!("Allow");
        assert!(!same_meaning(&a, &d));
        // A scalar is the same as a one-element list.
        let mut e = a.clone();
        e["Statement"][0]["Resource"] = json!(["*"]);
        assert!(same_meaning(&a, &e));
    }

    #[test]
    fn vpc_exceptions_are_added_only_when_listed() {
        let cidrs = vec!["192.0.2.0/24".to_string()];
        assert_eq!(
            source_ip_document_with(&cidrs, &[], &[]),
            source_ip_document(&cidrs)
        );
        let d =
            source_ip_document_with(&cidrs, &["vpce-0a1b2c3d".into()], &["vpc-11223344".into()]);
        let c = &d["Statement"][0]["Condition"];
        // IAM condition keys: aws:SourceVpce and aws:SourceVpc are present only on requests
        // through a VPC endpoint; ...IfExists keeps the deny for requests without them.
        assert_eq!(
            c["StringNotEqualsIfExists"],
            json!({"aws:SourceVpce": ["vpce-0a1b2c3d"], "aws:SourceVpc": ["vpc-11223344"]})
        );
        assert_eq!(c["NotIpAddress"]["aws:SourceIp"], json!(cidrs));
        let only_vpce = source_ip_document_with(&cidrs, &["vpce-0a1b2c3d".into()], &[]);
        assert!(
            only_vpce["Statement"][0]["Condition"]["StringNotEqualsIfExists"]
                .get("aws:SourceVpc")
                .is_none()
        );
        // Configured lists reach the desired document (and so a new policy version).
        let mut cfg = Config::default();
        cfg.baseline.source_ip_policy.enabled = true;
        cfg.baseline.source_ip_policy.allowed_cidrs = cidrs.clone();
        cfg.baseline.source_ip_policy.allowed_vpc_endpoints = vec!["vpce-0a1b2c3d".into()];
        let desired = desired_policies(&cfg).unwrap();
        let sip = desired
            .iter()
            .find(|p| p.kind == BaselinePolicy::SourceIp)
            .unwrap();
        assert!(same_meaning(&sip.document, &only_vpce));
        assert!(!same_meaning(&sip.document, &source_ip_document(&cidrs)));
    }

    #[test]
    fn oversized_documents_are_refused() {
        let mut cfg = Config::default();
        cfg.baseline.source_ip_policy.enabled = true;
        cfg.baseline.source_ip_policy.allowed_cidrs = (0..400)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        let e = desired_policies(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("iam-warden-source-ip") && e.contains("6144") && e.contains("allowed_cidrs"),
            "{e}"
        );
        cfg.baseline.source_ip_policy.allowed_cidrs.truncate(50);
        assert_eq!(desired_policies(&cfg).unwrap().len(), 2);
    }
}
