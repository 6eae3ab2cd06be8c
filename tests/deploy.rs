//! Checks of the deployment artefacts under `deploy/`, with the real tools.
//!
//! Tools (CI installs them; a missing tool FAILS the test, it is never skipped):
//! - `promtool`        Debian package `prometheus`
//! - `amtool`          Debian package `prometheus-alertmanager`
//! - `systemd-analyze` Debian package `systemd`
//! - a Python with PyYAML and cfn-lint: the project venv `.venv` (moto[server] brings
//!   both), or any Python named by `IAM_WARDEN_PYTHON`.
//!
//! No serde_yaml here: YAML files are turned into JSON by that Python, with a loader
//! that rejects duplicate keys.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// ---------------------------------------------------------------------------------
// What the daemon exports: read from its own registry (the constructor `iam-warden run`
// uses), never from a list kept here. Every label combination the daemon knows is
// pre-created at zero, so the label values found are the closed sets.
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Other,
}

#[derive(Debug)]
struct MetricDef {
    name: String,
    kind: Kind,
    /// (label, the values of the pre-created series)
    labels: Vec<(String, Vec<String>)>,
}

/// Every metric family of the registry, from its text exposition: `# TYPE` lines give
/// the names and kinds, the samples the labels and their values (`le` excluded).
fn parse_exposition(text: &str) -> Vec<MetricDef> {
    let mut defs: Vec<MetricDef> = vec![];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            defs.push(MetricDef {
                name: name.to_string(),
                kind: match kind {
                    "counter" => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    "histogram" => Kind::Histogram,
                    _ => Kind::Other,
                },
                labels: vec![],
            });
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let series = &line[..end];
        let def = defs
            .iter_mut()
            .rev()
            .find(|d| {
                d.name == series
                    || (d.kind == Kind::Histogram
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| series.strip_suffix(s) == Some(d.name.as_str())))
            })
            .unwrap_or_else(|| panic!("sample before its # TYPE: {line}"));
        if !line[end..].starts_with('{') {
            continue;
        }
        for (label, value) in parse_labels(&line[end + 1..]) {
            if label == "le" {
                continue;
            }
            let i = match def.labels.iter().position(|(l, _)| *l == label) {
                Some(i) => i,
                None => {
                    def.labels.push((label, vec![]));
                    def.labels.len() - 1
                }
            };
            if !def.labels[i].1.contains(&value) {
                def.labels[i].1.push(value);
            }
        }
    }
    defs
}

/// `a="x",b="y\"z"} 1` → [(a, x), (b, y"z)].
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut chars = s.chars().peekable();
    loop {
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != '}'))
            .collect::<String>()
            .trim_start_matches(',')
            .trim()
            .to_string();
        if chars.next() != Some('=') {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "label value of {name} in {s}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(e) => value.push(e),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((name, value));
    }
}

/// The daemon's metrics, and `up`, which Prometheus adds for every target.
fn exported() -> &'static [MetricDef] {
    static EXPORTED: std::sync::OnceLock<Vec<MetricDef>> = std::sync::OnceLock::new();
    EXPORTED.get_or_init(|| {
        let metrics = iam_warden::metrics::Metrics::new(env!("CARGO_PKG_VERSION"))
            .unwrap_or_else(|e| panic!("the metrics registry: {e}"));
        let mut defs = parse_exposition(&metrics.render());
        defs.push(MetricDef {
            name: "up".into(),
            kind: Kind::Gauge,
            labels: vec![],
        });
        defs
    })
}

/// The pre-created values of `label` on `metric`.
fn label_values(metric: &str, label: &str) -> Vec<String> {
    exported()
        .iter()
        .find(|m| m.name == metric)
        .unwrap_or_else(|| panic!("the registry has no {metric}"))
        .labels
        .iter()
        .find(|(l, _)| l == label)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{metric} has no label {label}"))
}

#[test]
fn registry_catalogue_is_read_from_the_daemons_registry() {
    let names: BTreeSet<&str> = exported().iter().map(|m| m.name.as_str()).collect();
    for name in [
        "iam_warden_writes_total",
        "iam_warden_reconcile_duration_seconds",
        "process_resident_memory_bytes",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let hist = exported()
        .iter()
        .find(|m| m.name == "iam_warden_reconcile_duration_seconds")
        .unwrap();
    assert_eq!(hist.kind, Kind::Histogram);
    let results: BTreeSet<String> = label_values("iam_warden_reconcile_duration_seconds", "result")
        .into_iter()
        .collect();
    assert_eq!(
        results,
        ["dropped", "error", "success"].map(String::from).into()
    );
    for action in ["tag_user", "untag_user", "delete_access_key"] {
        assert!(
            label_values("iam_warden_writes_total", "action").contains(&action.to_string()),
            "{action}"
        );
    }
    assert!(label_values("iam_warden_users_failing_check", "check")
        .contains(&"quota-reached".to_string()));
    assert_eq!(
        parse_labels(r#"a="x",b="y\"z\\"} 1"#),
        [
            ("a".to_string(), "x".to_string()),
            ("b".to_string(), "y\"z\\".to_string())
        ]
    );
}

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// The alerts deploy/prometheus/alerts.yml must define.
const ALERTS: &[&str] = &[
    "IamWardenDown",
    "IamWardenNotReady",
    "IamWardenResyncStale",
    "IamWardenAccountDown",
    "IamWardenAccountResyncStale",
    "IamWardenCloudTrailPollStale",
    "IamWardenReconcileErrors",
    "IamWardenBreakerTripped",
    "IamWardenWriteFailures",
    "IamWardenAwsThrottling",
    "IamWardenNonCompliantUsers",
    "IamWardenConsoleWithoutMfa",
    "IamWardenRootAccessKeyOrUse",
    "IamWardenCredentialReportStale",
    "IamWardenRotationStuck",
    "IamWardenExposedKey",
    "IamWardenExposedKeyNotQuarantined",
    "IamWardenNotificationsFailing",
    "IamWardenKeyTooOld",
];

const RUNBOOK_URL: &str = "https://github.com/iam-warden/iam-warden/blob/main/deploy/RUNBOOK.md";

const PORT: u16 = 9464;
const BINARY: &str = "/usr/local/bin/iam-warden";
const CONFIG_PATH: &str = "/etc/iam-warden/iam-warden.toml";
const STATE_DIR: &str = "/var/lib/iam-warden";

// ---------------------------------------------------------------------------------
// Running tools
// ---------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        s.push(' ');
        // Inline Python scripts would drown the output.
        s.push_str(if a.contains('\n') { "<script>" } else { &a });
    }
    s
}

/// Runs `cmd`; a missing program fails with how to install it.
fn output(cmd: &mut Command, install_hint: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{}` not found: {install_hint}",
            cmd.get_program().to_string_lossy()
        ),
        Err(e) => panic!("cannot run `{}`: {e}", describe(cmd)),
    }
}

/// Runs `cmd` and fails the test with its full output unless it succeeds.
fn run_ok(cmd: &mut Command, install_hint: &str) -> String {
    let out = output(cmd, install_hint);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{}` failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        describe(cmd),
        out.status
    );
    stdout
}

fn promtool() -> (Command, &'static str) {
    (
        Command::new("promtool"),
        "install the Debian package `prometheus` (apt-get install prometheus)",
    )
}

fn amtool() -> (Command, &'static str) {
    (
        Command::new("amtool"),
        "install the Debian package `prometheus-alertmanager` (apt-get install prometheus-alertmanager)",
    )
}

fn python() -> (Command, String) {
    let python = std::env::var_os("IAM_WARDEN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    let hint = format!(
        "no Python at {}: create the project venv (python3 -m venv .venv && .venv/bin/pip install \
         'moto[server]', which brings PyYAML and cfn-lint) or set IAM_WARDEN_PYTHON to a Python \
         that has PyYAML (Debian: python3-yaml) and cfn-lint (pip install cfn-lint)",
        python.display()
    );
    (Command::new(python), hint)
}

/// Loads YAML files as JSON (one array of documents per file), rejecting duplicate keys.
fn yaml_files(paths: &[PathBuf]) -> Vec<Vec<Value>> {
    yaml_files_with(paths, false)
}

/// [`yaml_files`]; with `cfn`, CloudFormation's short-form tags (`!Ref`, `!GetAtt`,
/// `!Sub`, ...) become their long form (`{"Ref": ...}`, `{"Fn::GetAtt": [..]}`, ...).
fn yaml_files_with(paths: &[PathBuf], cfn: bool) -> Vec<Vec<Value>> {
    const SCRIPT: &str = r#"
import json, sys
try:
    import yaml
except ImportError:
    sys.exit("PyYAML is missing from " + sys.executable + ": pip install pyyaml (Debian: python3-yaml)")

class StrictLoader(yaml.SafeLoader):
    pass

def mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)

StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)

def cfn_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {suffix if suffix == "Ref" or suffix == "Condition" else "Fn::" + suffix: value}

paths = sys.argv[1:]
if paths[:1] == ["--cfn"]:
    paths = paths[1:]
    StrictLoader.add_multi_constructor("!", cfn_tag)
out = []
for path in paths:
    with open(path) as f:
        try:
            out.append(list(yaml.load_all(f, Loader=StrictLoader)))
        except yaml.YAMLError as e:
            sys.exit("%s: invalid YAML: %s" % (path, e))
json.dump(out, sys.stdout, default=str)
"#;
    let (mut cmd, hint) = python();
    cmd.arg("-c").arg(SCRIPT);
    if cfn {
        cmd.arg("--cfn");
    }
    cmd.args(paths);
    let stdout = run_ok(&mut cmd, &hint);
    serde_json::from_str(&stdout).expect("YAML-to-JSON output is JSON")
}

fn yaml_file(path: &Path) -> Value {
    let mut docs = yaml_files(&[path.to_path_buf()]).remove(0);
    assert_eq!(
        docs.len(),
        1,
        "{}: expected one YAML document",
        path.display()
    );
    docs.remove(0)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string at {pointer} in {v}"))
}

// ---------------------------------------------------------------------------------
// A small PromQL scanner: metric names, their label matchers, grouping labels.
// Parsing proper is promtool's job; this only finds references.
// ---------------------------------------------------------------------------------

#[derive(Debug)]
struct Selector {
    metric: String,
    /// (label, operator, value)
    matchers: Vec<(String, String, String)>,
}

#[derive(Debug, Default)]
struct Refs {
    selectors: Vec<Selector>,
    grouping_labels: Vec<String>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn skip_ws(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

fn read_string(s: &[char], i: usize) -> Result<(String, usize), String> {
    let quote = s[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            '\\' if quote != '`' && j + 1 < s.len() => {
                out.push(s[j + 1]);
                j += 2;
            }
            c if c == quote => return Ok((out, j + 1)),
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    Err("unterminated string".into())
}

fn read_ident(s: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    while j < s.len() && is_ident_char(s[j]) {
        j += 1;
    }
    (s[i..j].iter().collect(), j)
}

fn promql_refs(expr: &str) -> Result<Refs, String> {
    let s: Vec<char> = expr.chars().collect();
    let mut refs = Refs::default();
    let mut last_metric: Option<usize> = None;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            i = read_string(&s, i)?.1;
            last_metric = None;
        } else if c == '[' {
            while i < s.len() && s[i] != ']' {
                i += 1;
            }
            i += 1;
            last_metric = None;
        } else if c == '{' {
            let Some(k) = last_metric.take() else {
                return Err("a selector without a metric name".into());
            };
            i += 1;
            loop {
                i = skip_ws(&s, i);
                match s.get(i) {
                    None => return Err("unterminated label matchers".into()),
                    Some('}') => {
                        i += 1;
                        break;
                    }
                    Some(',') => {
                        i += 1;
                        continue;
                    }
                    Some(_) => {}
                }
                let (label, j) = read_ident(&s, i);
                if label.is_empty() {
                    return Err(format!("bad label matcher at offset {i}"));
                }
                i = skip_ws(&s, j);
                let op: String = match (s.get(i), s.get(i + 1)) {
                    (Some('='), Some('~')) | (Some('!'), Some('~')) | (Some('!'), Some('=')) => {
                        s[i..i + 2].iter().collect()
                    }
                    (Some('='), _) => "=".into(),
                    _ => return Err(format!("no operator after label {label}")),
                };
                i = skip_ws(&s, i + op.len());
                if !matches!(s.get(i), Some('"' | '\'' | '`')) {
                    return Err(format!("label {label}: value is not a string"));
                }
                let (value, j) = read_string(&s, i)?;
                i = j;
                refs.selectors[k].matchers.push((label, op, value));
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers and durations (0.99, 3600, 5m, 1e3).
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.' || s[i] == '_') {
                i += 1;
            }
            last_metric = None;
        } else if is_ident_start(c) {
            let (ident, j) = read_ident(&s, i);
            i = j;
            last_metric = None;
            let next = skip_ws(&s, i);
            let lower = ident.to_ascii_lowercase();
            if GROUPING.contains(&ident.as_str()) {
                if s.get(next) == Some(&'(') {
                    let close = s[next..]
                        .iter()
                        .position(|&c| c == ')')
                        .ok_or("unterminated label list")?;
                    let list: String = s[next + 1..next + close].iter().collect();
                    refs.grouping_labels.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(String::from),
                    );
                    i = next + close + 1;
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&ident.as_str())
                || s.get(next) == Some(&'(')
            {
                // Operator keyword, aggregation or function call.
            } else {
                refs.selectors.push(Selector {
                    metric: ident,
                    matchers: vec![],
                });
                last_metric = Some(refs.selectors.len() - 1);
            }
        } else {
            last_metric = None;
            i += 1;
        }
    }
    Ok(refs)
}

/// The metric definition behind a series name, and whether it is a histogram bucket.
fn lookup_metric(name: &str) -> Option<(&'static MetricDef, bool)> {
    if let Some(m) = exported().iter().find(|m| m.name == name) {
        return Some((m, false));
    }
    for (suffix, bucket) in [("_bucket", true), ("_sum", false), ("_count", false)] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(m) = exported()
                .iter()
                .find(|m| m.name == base && m.kind == Kind::Histogram)
            {
                return Some((m, bucket));
            }
        }
    }
    None
}

/// Problems with the metric names and labels an expression refers to.
fn check_expr(expr: &str) -> Vec<String> {
    let refs = match promql_refs(expr) {
        Ok(r) => r,
        Err(e) => return vec![format!("cannot scan: {e}")],
    };
    let mut problems = vec![];
    let mut known_labels: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
    if refs.selectors.is_empty() {
        problems.push("refers to no metric".to_string());
    }
    for sel in &refs.selectors {
        let Some((def, bucket)) = lookup_metric(&sel.metric) else {
            problems.push(format!("unknown metric `{}`", sel.metric));
            continue;
        };
        known_labels.extend(def.labels.iter().map(|(l, _)| l.as_str()));
        if bucket {
            known_labels.insert("le");
        }
        for (label, op, value) in &sel.matchers {
            if TARGET_LABELS.contains(&label.as_str()) || (bucket && label == "le") {
                continue;
            }
            let Some((_, values)) = def.labels.iter().find(|(l, _)| l == label) else {
                problems.push(format!("`{}` has no label `{label}`", sel.metric));
                continue;
            };
            if value.contains('$') {
                continue; // a Grafana variable
            }
            let alternatives: Vec<&str> = if op.ends_with('~') {
                let plain = value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-|".contains(c));
                if !plain {
                    continue; // a real regular expression: cannot enumerate
                }
                value.split('|').collect()
            } else {
                vec![value.as_str()]
            };
            for alt in alternatives {
                if !values.iter().any(|v| v == alt) {
                    problems.push(format!(
                        "`{}{{{label}{op}\"{value}\"}}`: `{alt}` is not one of {values:?}",
                        sel.metric
                    ));
                }
            }
        }
    }
    for label in &refs.grouping_labels {
        if !known_labels.contains(label.as_str()) {
            problems.push(format!(
                "groups by `{label}`, which none of its metrics has (known: {known_labels:?})"
            ));
        }
    }
    problems
}

#[test]
fn promql_scanner_finds_names_labels_and_unknowns() {
    let refs = promql_refs(
        r#"histogram_quantile(0.99, sum by (le, from) (rate(iam_warden_event_to_enforcement_seconds_bucket{job="$job", instance=~"$instance"}[$__rate_interval])))
           / on (job) group_left sum(up offset 5m) or absent(iam_warden_ready{job="a"})"#,
    )
    .unwrap();
    let names: Vec<&str> = refs.selectors.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(
        names,
        [
            "iam_warden_event_to_enforcement_seconds_bucket",
            "up",
            "iam_warden_ready"
        ]
    );
    assert_eq!(refs.selectors[0].matchers.len(), 2);
    assert_eq!(refs.grouping_labels, ["le", "from", "job"]);

    assert!(check_expr(r#"sum by (state) (iam_warden_users{state="violating"})"#).is_empty());
    assert!(check_expr(r#"iam_warden_reconciles_total{result=~"success|error"}"#).is_empty());
    assert_eq!(check_expr("iam_warden_user").len(), 1, "unknown metric");
    assert_eq!(
        check_expr(r#"iam_warden_users{state="violation"}"#).len(),
        1,
        "bad value"
    );
    assert_eq!(
        check_expr(r#"iam_warden_users{check="key-too-old"}"#).len(),
        1,
        "bad label"
    );
    assert_eq!(
        check_expr("sum by (action) (iam_warden_users)").len(),
        1,
        "bad grouping"
    );
    assert_eq!(
        check_expr("iam_warden_ready_bucket").len(),
        1,
        "gauge has no buckets"
    );
}

// ---------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------

#[test]
fn promtool_check_rules_alerts() {
    let (mut cmd, hint) = promtool();
    run_ok(
        cmd.arg("check")
            .arg("rules")
            .arg(deploy("prometheus/alerts.yml")),
        hint,
    );
}

#[test]
fn promtool_test_rules_alerts() {
    let (mut cmd, hint) = promtool();
    run_ok(
        cmd.arg("test")
            .arg("rules")
            .arg(deploy("prometheus/alerts.test.yml")),
        hint,
    );
}

#[test]
fn promtool_check_config_prometheus() {
    let (mut cmd, hint) = promtool();
    run_ok(
        cmd.arg("check")
            .arg("config")
            .arg(deploy("prometheus/prometheus.yml")),
        hint,
    );

    let config = yaml_file(&deploy("prometheus/prometheus.yml"));
    let rule_files: Vec<&str> = config["rule_files"]
        .as_array()
        .expect("rule_files")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rule_files, ["alerts.yml"]);
    let job = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "iam-warden")
        .expect("a scrape job named iam-warden: the alerts select job=\"iam-warden\"");
    let target = str_at(job, "/static_configs/0/targets/0");
    assert!(
        target.ends_with(&format!(":{PORT}")),
        "scrape target {target} is not on port {PORT}"
    );
}

fn alert_rules() -> Vec<Value> {
    let doc = yaml_file(&deploy("prometheus/alerts.yml"));
    let groups = doc["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "one rule group");
    assert_eq!(groups[0]["name"], "iam-warden");
    groups[0]["rules"].as_array().expect("rules").clone()
}

/// GitHub's anchor for a Markdown heading.
fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Runbook sections by anchor: (heading, body).
fn runbook_sections() -> BTreeMap<String, (String, String)> {
    let text = read(&deploy("RUNBOOK.md"));
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut in_code = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let heading = (!in_code)
            .then(|| line.trim_start_matches('#'))
            .filter(|rest| line.starts_with('#') && rest.starts_with(' '));
        if let Some(heading) = heading {
            if let Some((h, body)) = current.take() {
                sections.insert(github_slug(&h), (h, body));
            }
            current = Some((heading.trim().to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((h, body)) = current {
        sections.insert(github_slug(&h), (h, body));
    }
    sections
}

#[test]
fn every_alert_has_severity_annotations_and_a_runbook_section() {
    let rules = alert_rules();
    let sections = runbook_sections();
    let mut names = vec![];
    let mut problems = vec![];
    for rule in &rules {
        let Some(name) = rule["alert"].as_str() else {
            problems.push(format!("not an alerting rule: {rule}"));
            continue;
        };
        names.push(name);
        let severity = rule.pointer("/labels/severity").and_then(Value::as_str);
        if !matches!(severity, Some("critical" | "warning")) {
            problems.push(format!(
                "{name}: severity must be critical or warning, is {severity:?}"
            ));
        }
        for key in ["summary", "description", "runbook_url"] {
            let value = rule
                .pointer(&format!("/annotations/{key}"))
                .and_then(Value::as_str);
            if value.is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("{name}: annotation {key} missing"));
            }
        }
        let anchor = name.to_lowercase();
        let expected_url = format!("{RUNBOOK_URL}#{anchor}");
        let url = rule
            .pointer("/annotations/runbook_url")
            .and_then(Value::as_str);
        if url != Some(expected_url.as_str()) {
            problems.push(format!(
                "{name}: runbook_url is {url:?}, expected {expected_url}"
            ));
        }
        match sections.get(&anchor) {
            None => problems.push(format!(
                "{name}: deploy/RUNBOOK.md has no section `## {name}`"
            )),
            Some((_, body)) => {
                for part in ["**Meaning.**", "**Investigate.**", "**Fix.**"] {
                    if !body.contains(part) {
                        problems.push(format!("{name}: runbook section lacks {part}"));
                    }
                }
            }
        }
    }
    let expected: BTreeSet<&str> = ALERTS.iter().copied().collect();
    let got: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(got, expected, "the set of alerts");
    assert_eq!(names.len(), got.len(), "duplicate alert names: {names:?}");
    // Runbook sections that look like alerts must belong to one.
    for (heading, _) in sections.values() {
        if heading.starts_with("IamWarden") && !got.contains(heading.as_str()) {
            problems.push(format!("RUNBOOK.md section `{heading}` matches no alert"));
        }
    }
    assert!(
        problems.is_empty(),
        "alert problems:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn alert_expressions_use_only_exported_metrics() {
    let mut problems = vec![];
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap_or("?").to_string();
        let expr = str_at(&rule, "/expr");
        problems.extend(check_expr(expr).into_iter().map(|p| format!("{name}: {p}")));
    }
    assert!(
        problems.is_empty(),
        "alert expressions:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_alert_has_unit_tests_that_fire_and_stay_quiet() {
    let tests = yaml_file(&deploy("prometheus/alerts.test.yml"));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for group in tests["tests"].as_array().expect("tests") {
        for case in group["alert_rule_test"].as_array().into_iter().flatten() {
            let name = str_at(case, "/alertname").to_string();
            match case["exp_alerts"].as_array() {
                Some(a) if !a.is_empty() => fires.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    for alert in ALERTS {
        assert!(
            fires.contains(*alert),
            "alerts.test.yml never expects {alert} to fire"
        );
        assert!(
            quiet.contains(*alert),
            "alerts.test.yml never expects {alert} to stay quiet"
        );
    }
}

// ---------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------

#[test]
fn amtool_check_config_alertmanager() {
    let (mut cmd, hint) = amtool();
    run_ok(
        cmd.arg("check-config")
            .arg(deploy("alertmanager/alertmanager.yml")),
        hint,
    );
}

#[test]
fn alertmanager_routes_each_alert_by_severity() {
    let config = deploy("alertmanager/alertmanager.yml");
    for rule in alert_rules() {
        let name = str_at(&rule, "/alert");
        let severity = str_at(&rule, "/labels/severity");
        let receiver = if severity == "critical" {
            "pager"
        } else {
            "chat"
        };
        let (mut cmd, hint) = amtool();
        cmd.args(["config", "routes", "test", "--config.file"])
            .arg(&config)
            .arg(format!("--verify.receivers={receiver}"))
            .arg(format!("alertname={name}"))
            .arg(format!("severity={severity}"))
            .args(["job=iam-warden", "instance=warden:9464"]);
        run_ok(&mut cmd, hint);
    }

    let am = yaml_file(&config);
    let inhibit = am["inhibit_rules"].as_array().expect("inhibit_rules");
    let down = inhibit
        .iter()
        .find(|r| {
            r["source_matchers"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m == "alertname=\"IamWardenDown\""))
        })
        .expect("an inhibit rule with source alertname=\"IamWardenDown\"");
    let targets: Vec<&str> = down["target_matchers"]
        .as_array()
        .expect("target_matchers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        targets.contains(&"alertname!=\"IamWardenDown\""),
        "IamWardenDown must not inhibit itself"
    );
    assert!(
        targets
            .iter()
            .any(|t| t.starts_with("alertname=~\"IamWarden")),
        "targets the other alerts"
    );
    for url in am["receivers"].as_array().unwrap().iter().flat_map(|r| {
        r["webhook_configs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| str_at(w, "/url").to_string())
    }) {
        assert!(
            url.contains(".example.invalid/"),
            "placeholder webhook expected, got {url}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Grafana
// ---------------------------------------------------------------------------------

fn dashboard() -> Value {
    let path = deploy("grafana/iam-warden.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `expr` anywhere in the dashboard, with a JSON path to report.
fn dashboard_exprs(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{path}/{k}");
                match (k.as_str(), child) {
                    ("expr", Value::String(e)) => out.push((p, e.clone())),
                    _ => dashboard_exprs(child, &p, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                dashboard_exprs(child, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Grafana's built-in interval variables, replaced by fixed durations for promtool.
fn substitute_grafana_intervals(expr: &str) -> String {
    [
        ("${__rate_interval}", "5m"),
        ("$__rate_interval", "5m"),
        ("${__interval}", "1m"),
        ("$__interval", "1m"),
        ("${__range}", "1h"),
        ("$__range", "1h"),
    ]
    .iter()
    .fold(expr.to_string(), |e, (from, to)| e.replace(from, to))
}

#[test]
fn dashboard_expressions_parse_with_promtool() {
    let mut exprs = vec![];
    dashboard_exprs(&dashboard(), "", &mut exprs);
    assert!(
        exprs.len() >= 20,
        "only {} expressions in the dashboard",
        exprs.len()
    );
    let mut rules = String::from("groups:\n  - name: grafana-dashboard\n    rules:\n");
    for (i, (path, expr)) in exprs.iter().enumerate() {
        // JSON strings are valid YAML double-quoted scalars.
        rules.push_str(&format!(
            "      # {path}\n      - record: grafana:expr_{i}\n        expr: {}\n",
            serde_json::to_string(&substitute_grafana_intervals(expr)).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-exprs.yml");
    fs::write(&file, &rules).unwrap();
    let (mut cmd, hint) = promtool();
    let out = output(cmd.arg("check").arg("rules").arg(&file), hint);
    assert!(
        out.status.success(),
        "promtool rejects dashboard expressions:\n{}\n{}\n--- rule file\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboard_uses_only_exported_metrics() {
    let dash = dashboard();
    let mut exprs = vec![];
    dashboard_exprs(&dash, "", &mut exprs);
    let mut problems = vec![];
    for (path, expr) in &exprs {
        problems.extend(check_expr(expr).into_iter().map(|p| format!("{path}: {p}")));
    }
    // Template variable queries: label_values(<selector>, <label>).
    for var in dash
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .expect("templating")
    {
        if var["type"] != "query" {
            continue;
        }
        let query = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap_or("");
        let name = var["name"].as_str().unwrap_or("?");
        let Some(inner) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        else {
            problems.push(format!(
                "variable {name}: expected label_values(...), got {query:?}"
            ));
            continue;
        };
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let label = label.trim();
        problems.extend(
            check_expr(selector)
                .into_iter()
                .map(|p| format!("variable {name}: {p}")),
        );
        let metric = promql_refs(selector)
            .ok()
            .and_then(|r| r.selectors.into_iter().next());
        if let Some((def, _)) = metric.and_then(|s| lookup_metric(&s.metric)) {
            if !TARGET_LABELS.contains(&label) && !def.labels.iter().any(|(l, _)| l == label) {
                problems.push(format!(
                    "variable {name}: {} has no label {label}",
                    def.name
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn dashboard_structure() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "iam-warden");
    let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");

    let vars = dash
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` template variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");

    let panels = dash["panels"].as_array().expect("panels");
    let mut all = vec![];
    for p in panels {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten()); // collapsed rows
    }
    let rows: Vec<&str> = all
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| str_at(p, "/title"))
        .collect();
    assert_eq!(
        rows,
        [
            "Compliance",
            "Credential lifecycle",
            "Activity",
            "Sources",
            "AWS",
            "Process"
        ]
    );

    let mut ids = BTreeSet::new();
    let mut boxes = vec![];
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title} has no id"));
        assert!(ids.insert(id), "duplicate panel id {id}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64(),
            g["y"].as_u64(),
            g["w"].as_u64(),
            g["h"].as_u64(),
        );
        let (Some(x), Some(y), Some(w), Some(h)) = (x, y, w, h) else {
            panic!("panel {title}: bad gridPos {g}")
        };
        assert!(
            x + w <= 24 && w > 0 && h > 0,
            "panel {title}: gridPos {g} outside the 24-column grid"
        );
        boxes.push((title, x, y, w, h));
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p.pointer("/datasource/uid"),
            Some(&Value::from("${datasource}")),
            "panel {title}"
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {title} has no targets"));
        assert!(!targets.is_empty(), "panel {title} has no targets");
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "panel {title}: empty expr"
            );
            assert!(
                ref_ids.insert(str_at(t, "/refId")),
                "panel {title}: duplicate refId"
            );
            assert_eq!(
                t.pointer("/datasource/uid"),
                Some(&Value::from("${datasource}")),
                "panel {title}"
            );
        }
    }
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let overlap = a.1 < b.1 + b.3 && b.1 < a.1 + a.3 && a.2 < b.2 + b.4 && b.2 < a.2 + a.4;
            assert!(!overlap, "panels `{}` and `{}` overlap", a.0, b.0);
        }
    }
}

// ---------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------

fn unit_directives(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = vec![];
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[test]
fn systemd_unit_verifies() {
    // The drop-ins next to it are verified with it.
    let dropins: Vec<(String, String)> = fs::read_dir(deploy("systemd/iam-warden.service.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read(&p),
            )
        })
        .collect();
    systemd_verify(&dropins);
}

/// `systemd-analyze verify` of the unit with these drop-ins (file name, text).
fn systemd_verify(dropins: &[(String, String)]) {
    let original = read(&deploy("systemd/iam-warden.service"));
    let prefix = format!("ExecStart={BINARY} ");
    // Same unit, but ExecStart runs a binary that exists here; every other line identical.
    let mut rewritten = 0;
    let lines: Vec<String> = original
        .lines()
        .map(|line| match line.strip_prefix(&prefix) {
            Some(args) => {
                rewritten += 1;
                format!("ExecStart=/bin/true {args}")
            }
            None => line.to_string(),
        })
        .collect();
    assert_eq!(rewritten, 1, "expected exactly one `{prefix}...` line");
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("iam-warden.service");
    fs::write(&unit, lines.join("\n") + "\n").unwrap();
    fs::create_dir(dir.path().join("iam-warden.service.d")).unwrap();
    for (name, text) in dropins {
        fs::write(dir.path().join("iam-warden.service.d").join(name), text).unwrap();
    }

    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no"]).arg(&unit);
    let out = output(
        &mut cmd,
        "install the Debian package `systemd` (apt-get install systemd)",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values, but reports them on stderr.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("iam-warden.service"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify ({}):\n{}\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn systemd_webhook_key_is_a_root_only_credential() {
    let text = read(&deploy("systemd/iam-warden.service.d/webhook-secret.conf"));
    let directives = unit_directives(&text);
    let load: Vec<&String> = directives
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == "LoadCredential")
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(
        load.len(),
        1,
        "one LoadCredential= in the drop-in: {directives:?}"
    );
    let (id, source) = load[0].split_once(':').expect("LoadCredential=ID:PATH");
    assert!(
        source.starts_with("/etc/iam-warden/"),
        "the key file lives with the configuration: {source}"
    );
    assert!(
        directives.iter().all(|(_, k, _)| k == "LoadCredential"),
        "the drop-in only passes the credential: {directives:?}"
    );
    // The path the daemon reads, as documented in the drop-in.
    let documented = format!("webhook_secret_file = \"/run/credentials/iam-warden.service/{id}\"");
    assert!(
        text.contains(&documented),
        "the drop-in should document {documented}"
    );
    assert!(
        text.contains(&format!(
            "install -m 0600 -o root -g root webhook-secret {source}"
        )),
        "the drop-in should say how to install {source} root-only"
    );
}

#[test]
fn systemd_unit_runs_hardened() {
    let d = unit_directives(&read(&deploy("systemd/iam-warden.service")));
    let get = |key: &str| -> Vec<&str> {
        d.iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let expect = [
        ("Type", "simple"),
        (
            "ExecStart",
            &*format!("{BINARY} run --config {CONFIG_PATH}"),
        ),
        ("Restart", "on-failure"),
        ("TimeoutStopSec", "30"),
        ("KillSignal", "SIGTERM"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "iam-warden"),
        ("Environment", "RUST_LOG=info"),
        ("EnvironmentFile", "-/etc/iam-warden/env"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
    ];
    for (key, value) in expect {
        assert!(
            get(key).contains(&value),
            "[Service] {key}={value} expected, found {:?}",
            get(key)
        );
    }
}

/// The state directory is private: 0700 and a umask that keeps anything else 0600.
#[test]
fn systemd_unit_keeps_the_state_private() {
    let d = unit_directives(&read(&deploy("systemd/iam-warden.service")));
    let get = |key: &str| -> Vec<&str> {
        d.iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("StateDirectoryMode"), ["0700"]);
    assert_eq!(get("UMask"), ["0077"]);
    assert_eq!(get("WorkingDirectory"), [STATE_DIR]);
}

// ---------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------

struct K8s {
    /// (file name, document)
    docs: Vec<(String, Value)>,
    kustomization: Value,
}

impl K8s {
    fn load() -> K8s {
        let dir = deploy("kubernetes");
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        let parsed = yaml_files(&files);
        let mut docs = vec![];
        let mut kustomization = None;
        for (path, file_docs) in files.iter().zip(parsed) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            for doc in file_docs {
                if doc["kind"] == "Kustomization" {
                    kustomization = Some(doc);
                } else {
                    docs.push((name.clone(), doc));
                }
            }
        }
        K8s {
            docs,
            kustomization: kustomization.expect("kustomization.yaml"),
        }
    }

    fn one(&self, kind: &str) -> &Value {
        let found: Vec<&Value> = self
            .docs
            .iter()
            .filter(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d)
            .collect();
        assert_eq!(found.len(), 1, "expected one {kind}");
        found[0]
    }
}

#[test]
fn kubernetes_manifests_parse_and_kustomization_lists_them() {
    let k = K8s::load();
    let mut files: BTreeSet<String> = k.docs.iter().map(|(f, _)| f.clone()).collect();
    let listed: BTreeSet<String> = k.kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    files.remove("kustomization.yaml");
    assert_eq!(
        listed, files,
        "kustomization.yaml resources vs. files in deploy/kubernetes"
    );
    assert_eq!(k.kustomization["namespace"], "iam-warden");

    for (file, doc) in &k.docs {
        for key in ["/apiVersion", "/kind", "/metadata/name"] {
            assert!(
                doc.pointer(key).and_then(Value::as_str).is_some(),
                "{file}: no {key}"
            );
        }
        if doc["kind"] != "Namespace" {
            assert_eq!(
                doc.pointer("/metadata/namespace"),
                Some(&Value::from("iam-warden")),
                "{file}"
            );
        }
    }
    let kinds: BTreeSet<&str> = k.docs.iter().map(|(_, d)| str_at(d, "/kind")).collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/kubernetes");
    }
    let sm = k
        .docs
        .iter()
        .find(|(_, d)| d["kind"] == "ServiceMonitor")
        .unwrap();
    assert_eq!(
        sm.0, "servicemonitor.yaml",
        "the ServiceMonitor has its own file"
    );
    assert_eq!(sm.1["apiVersion"], "monitoring.coreos.com/v1");
    let sa = k.one("ServiceAccount");
    assert!(
        sa.pointer("/metadata/annotations/eks.amazonaws.com~1role-arn")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with("arn:aws:iam::")),
        "IRSA annotation eks.amazonaws.com/role-arn"
    );
}

#[test]
fn kubernetes_deployment_probes_ports_and_security() {
    let k = K8s::load();
    let dep = k.one("Deployment");
    let svc = k.one("Service");
    let sm = k.one("ServiceMonitor");
    let spec = &dep["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec.pointer("/strategy/type"),
        Some(&Value::from("Recreate"))
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        pod["serviceAccountName"],
        k.one("ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(
        pod.pointer("/securityContext/runAsNonRoot"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        pod.pointer("/securityContext/seccompProfile/type"),
        Some(&Value::from("RuntimeDefault"))
    );

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "--config", CONFIG_PATH])
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(
        sc.pointer("/capabilities/drop"),
        Some(&serde_json::json!(["ALL"]))
    );
    assert_eq!(
        c.pointer("/resources/requests/cpu"),
        Some(&Value::from("50m"))
    );
    assert_eq!(
        c.pointer("/resources/requests/memory"),
        Some(&Value::from("64Mi"))
    );
    assert_eq!(
        c.pointer("/resources/limits/memory"),
        Some(&Value::from("256Mi"))
    );

    // The container port, by name and number.
    let ports = c["ports"].as_array().unwrap();
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a container port named metrics");
    assert_eq!(metrics["containerPort"], PORT);
    let resolves_to_metrics =
        |port: &Value| port == "metrics" || port.as_u64() == Some(u64::from(PORT));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe} path");
        assert!(
            resolves_to_metrics(&get["port"]),
            "{probe} port {} is not the metrics port",
            get["port"]
        );
    }

    // The Service exposes that port and selects the pod.
    let svc_port = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(svc_port.len(), 1);
    assert_eq!(svc_port[0]["port"], PORT);
    assert_eq!(svc_port[0]["name"], "metrics");
    assert!(
        resolves_to_metrics(&svc_port[0]["targetPort"]),
        "Service targetPort"
    );
    let pod_labels = spec
        .pointer("/template/metadata/labels")
        .and_then(Value::as_object)
        .unwrap();
    for (k, v) in svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .unwrap()
    {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "Service selector {k} does not match the pod"
        );
    }
    for (k, v) in spec
        .pointer("/selector/matchLabels")
        .and_then(Value::as_object)
        .unwrap()
    {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "Deployment selector {k} does not match the pod"
        );
    }
    // The ServiceMonitor scrapes that Service port.
    let svc_labels = svc
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .unwrap();
    for (k, v) in sm
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .unwrap()
    {
        assert_eq!(
            svc_labels.get(k),
            Some(v),
            "ServiceMonitor selector {k} does not match the Service"
        );
    }
    assert_eq!(
        sm.pointer("/spec/endpoints/0/port"),
        Some(&Value::from("metrics"))
    );
    assert_eq!(
        sm.pointer("/spec/endpoints/0/path"),
        Some(&Value::from("/metrics"))
    );

    // Volumes: config from the ConfigMap, state on the PVC.
    let mounts = c["volumeMounts"].as_array().unwrap();
    let volumes = pod["volumes"].as_array().unwrap();
    let volume_at = |path: &str| -> &Value {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("mounted volume exists")
    };
    assert_eq!(
        volume_at(STATE_DIR).pointer("/persistentVolumeClaim/claimName"),
        Some(&k.one("PersistentVolumeClaim")["metadata"]["name"])
    );
    let config = volume_at("/etc/iam-warden");
    assert_eq!(
        config.pointer("/configMap/name"),
        Some(&k.one("ConfigMap")["metadata"]["name"])
    );

    // The webhook signing key: an optional Secret, mounted read-only, owner-only mode, at
    // the path the ConfigMap documents for notifications.webhook_secret_file.
    let dir = "/run/secrets/iam-warden";
    let mount = mounts
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    assert_eq!(
        mount["readOnly"], true,
        "the webhook key is mounted read-only"
    );
    let secret = &volume_at(dir)["secret"];
    assert_eq!(secret["secretName"], "iam-warden-webhook");
    assert_eq!(
        secret["optional"], true,
        "the pod starts without notifications"
    );
    assert_eq!(
        secret["defaultMode"], 0o400,
        "the key is readable by its owner only"
    );
    let file = str_at(secret, "/items/0/path");
    let documented = format!("webhook_secret_file = \"{dir}/{file}\"");
    assert!(
        str_at(k.one("ConfigMap"), "/data/iam-warden.toml").contains(&documented),
        "the ConfigMap should document {documented}"
    );
}

/// The pod runs as the image's user, and the state volume is writable by it only through
/// its own group (fsGroup = runAsGroup = the image's gid).
#[test]
fn kubernetes_pod_identity_matches_the_image_and_owns_the_state_volume() {
    let k = K8s::load();
    let sc = k
        .one("Deployment")
        .pointer("/spec/template/spec/securityContext")
        .expect("pod securityContext");
    let user = dockerfile()
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, r)| r.clone())
        .expect("USER in the Dockerfile");
    let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
    assert_eq!(
        sc["runAsUser"].to_string(),
        uid,
        "runAsUser vs. USER {user}"
    );
    assert_eq!(
        sc["runAsGroup"].to_string(),
        gid,
        "runAsGroup vs. USER {user}"
    );
    assert_eq!(
        sc["fsGroup"], sc["runAsGroup"],
        "fsGroup is the daemon's own group"
    );
}

/// Ingress only from Prometheus (namespace `monitoring`) to the metrics port; egress only
/// DNS and HTTPS.
#[test]
fn kubernetes_networkpolicy_admits_scrapes_dns_and_https_only() {
    let k = K8s::load();
    let np = k.one("NetworkPolicy");
    assert_eq!(np["apiVersion"], "networking.k8s.io/v1");
    let spec = &np["spec"];
    let mut types: Vec<&str> = spec["policyTypes"]
        .as_array()
        .expect("policyTypes")
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["Egress", "Ingress"], "both directions default-deny");

    // It selects the daemon's pod (and its selector is not empty: not every pod).
    let dep = k.one("Deployment");
    let pod_labels = dep
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .unwrap();
    let selector = spec
        .pointer("/podSelector/matchLabels")
        .and_then(Value::as_object)
        .expect("podSelector.matchLabels");
    assert!(!selector.is_empty(), "podSelector must name the pod");
    for (key, v) in selector {
        assert_eq!(pod_labels.get(key), Some(v), "podSelector {key}");
    }

    // Ingress: one rule, from the monitoring namespace, to the metrics port.
    let container = dep
        .pointer("/spec/template/spec/containers/0")
        .expect("a container");
    let metrics_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("container port metrics");
    assert_eq!(metrics_port["containerPort"], PORT);
    let ingress = spec["ingress"].as_array().expect("ingress rules");
    assert_eq!(ingress.len(), 1, "one ingress rule: {ingress:?}");
    let from = ingress[0]["from"].as_array().expect("ingress from");
    assert_eq!(
        from,
        &vec![serde_json::json!({"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"
        }}})],
        "scrapes only from the namespace monitoring"
    );
    let ports = ingress[0]["ports"].as_array().expect("ingress ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["protocol"], "TCP");
    assert!(
        ports[0]["port"] == PORT || ports[0]["port"] == "metrics",
        "ingress port {} is not the metrics port",
        ports[0]["port"]
    );
    // The Service forwards to that same port.
    let svc = k.one("Service");
    let target = svc.pointer("/spec/ports/0/targetPort").unwrap();
    assert!(
        target == PORT || target == "metrics",
        "Service targetPort {target}"
    );
    // The ServiceMonitor and the runbook name the same namespace.
    let sm = read(&deploy("kubernetes/servicemonitor.yaml"));
    assert!(
        sm.contains("\"monitoring\""),
        "servicemonitor.yaml names the Prometheus namespace"
    );

    // Egress: DNS over UDP and TCP, and HTTPS; nothing else, to anywhere.
    let mut allowed = BTreeSet::new();
    for rule in spec["egress"].as_array().expect("egress rules") {
        assert!(rule.get("to").is_none(), "egress by port only: {rule}");
        for p in rule["ports"].as_array().expect("egress ports") {
            allowed.insert((
                str_at(p, "/protocol").to_string(),
                p["port"].as_u64().unwrap(),
            ));
        }
    }
    let expected: BTreeSet<(String, u64)> = [("UDP", 53), ("TCP", 53), ("TCP", 443)]
        .into_iter()
        .map(|(p, n)| (p.to_string(), n))
        .collect();
    assert_eq!(allowed, expected);
}

#[test]
fn kubernetes_prometheusrule_matches_alerts_and_image_is_kustomized() {
    let k = K8s::load();
    let rule = k.one("PrometheusRule");
    let alerts = yaml_file(&deploy("prometheus/alerts.yml"));
    assert!(
        rule["spec"]["groups"] == alerts["groups"],
        "deploy/kubernetes/prometheusrule.yaml is out of date with deploy/prometheus/alerts.yml: \
         regenerate it with the command in its header"
    );

    let image = str_at(
        k.one("Deployment"),
        "/spec/template/spec/containers/0/image",
    );
    let images = k.kustomization["images"]
        .as_array()
        .expect("kustomization images");
    assert!(
        images
            .iter()
            .any(|i| i["name"] == image && i["newName"].is_string()),
        "kustomization.yaml `images` does not set the container image `{image}`"
    );
}

fn configmap_toml() -> toml::Table {
    let k = K8s::load();
    let text = str_at(k.one("ConfigMap"), "/data/iam-warden.toml");
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("ConfigMap iam-warden.toml: {e}"))
}

/// "90s", "10m", "1h", "2d" or plain seconds.
fn duration_secs(v: &toml::Value) -> u64 {
    if let Some(n) = v.as_integer() {
        return u64::try_from(n).unwrap_or_else(|_| panic!("negative duration {n}"));
    }
    let s = v.as_str().expect("a duration");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().unwrap_or_else(|_| panic!("bad duration {s}"));
    n * match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => panic!("bad duration {s}"),
    }
}

#[test]
fn configmap_config_agrees_with_the_manifests_alerts_and_policy() {
    let cfg = configmap_toml();
    let listen = cfg["server"]["listen"].as_str().expect("server.listen");
    assert_eq!(listen, format!("0.0.0.0:{PORT}"), "server.listen");
    assert_eq!(cfg["state_dir"].as_str(), Some(STATE_DIR));
    assert_eq!(
        cfg["mode"].as_str(),
        Some("dry-run"),
        "ship the example in dry-run mode"
    );

    // IamWardenResyncStale allows three resync intervals.
    let resync = duration_secs(&cfg["resync"]["interval"]);
    let stale = alert_rules()
        .into_iter()
        .find(|r| r["alert"] == "IamWardenResyncStale")
        .unwrap();
    assert!(
        str_at(&stale, "/expr").contains(&format!("> 3 * {resync}")),
        "IamWardenResyncStale must allow 3 × resync.interval ({resync}s)"
    );
    // IamWardenKeyTooOld: the age limit plus the rotation grace (the ConfigMap's, else the
    // defaults).
    let defaults = iam_warden::config::Config::default();
    let setting = |section: &[&str], default: u32| -> i64 {
        let mut v = cfg.get(section[0]);
        for k in &section[1..] {
            v = v.and_then(|t| t.get(*k));
        }
        v.and_then(toml::Value::as_integer)
            .unwrap_or(i64::from(default))
    };
    let max_age = setting(
        &["baseline", "credentials", "max_key_age_days"],
        defaults.baseline.credentials.max_key_age_days,
    );
    let grace = setting(&["rotation", "grace_days"], defaults.rotation.grace_days);
    let too_old = alert_rules()
        .into_iter()
        .find(|r| r["alert"] == "IamWardenKeyTooOld")
        .unwrap();
    assert!(
        str_at(&too_old, "/expr").contains(&format!("> ({max_age} + {grace}) * 86400")),
        "IamWardenKeyTooOld must fire past max_key_age_days + grace_days ({max_age} + {grace} days)"
    );

    // CloudTrail polls well within IamWardenCloudTrailPollStale's 15 minutes.
    assert!(duration_secs(&cfg["sources"]["cloudtrail"]["poll_interval"]) * 3 <= 900);
    // The drain fits in the pod's grace period and systemd's TimeoutStopSec (30 s).
    assert!(duration_secs(&cfg["controller"]["shutdown_grace"]) + 5 <= 30);

    // The IAM policy scopes writes to the configured path.
    let path = cfg["baseline"]["path"].as_str().expect("baseline.path");
    let policy = iam_policy();
    // A statement that only detaches one named policy (CIS 1.21: AWSCloudShellFullAccess)
    // may name any group: it takes that policy away, it grants nothing.
    let detaches_one_policy = |s: &Value| {
        one_or_many(&s["Action"])
            .iter()
            .all(|a| a.starts_with("iam:Detach"))
            && s.pointer("/Condition/ArnEquals/iam:PolicyARN").is_some()
    };
    let resources: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !detaches_one_policy(s))
        .flat_map(|s| one_or_many(&s["Resource"]))
        .collect();
    for kind in ["policy", "group"] {
        let scoped = format!("arn:aws:iam::*:{kind}{path}*");
        assert!(
            resources.contains(&scoped),
            "the IAM policy should scope {kind} writes to {scoped}"
        );
        for r in resources
            .iter()
            .filter(|r| r.contains(&format!(":{kind}/")))
        {
            assert_eq!(r, &scoped, "a {kind} resource outside baseline.path");
        }
    }
}

#[test]
fn configmap_config_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iam-warden.toml");
    let k = K8s::load();
    fs::write(&file, str_at(k.one("ConfigMap"), "/data/iam-warden.toml")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iam-warden"));
    cmd.args(["check-config", "--config"]).arg(&file);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("IAM_WARDEN_") {
            cmd.env_remove(key);
        }
    }
    run_ok(&mut cmd, "cargo builds it");
}

// ---------------------------------------------------------------------------------
// IAM policy
// ---------------------------------------------------------------------------------

fn iam_policy() -> Value {
    let path = deploy("iam/iam-warden-policy.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn one_or_many(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().expect("a string").to_string())
            .collect(),
        _ => vec![],
    }
}

/// The IAM API call behind each `iam_warden_writes_total{action}`.
const WRITE_API: &[(&str, &str)] = &[
    ("create_policy", "iam:CreatePolicy"),
    ("create_policy_version", "iam:CreatePolicyVersion"),
    ("delete_policy_version", "iam:DeletePolicyVersion"),
    ("create_group", "iam:CreateGroup"),
    ("attach_group_policy", "iam:AttachGroupPolicy"),
    ("add_user_to_group", "iam:AddUserToGroup"),
    ("attach_user_policy", "iam:AttachUserPolicy"),
    ("delete_login_profile", "iam:DeleteLoginProfile"),
    ("deactivate_access_key", "iam:UpdateAccessKey"),
    ("delete_access_key", "iam:DeleteAccessKey"),
    ("update_password_policy", "iam:UpdateAccountPasswordPolicy"),
    ("tag_user", "iam:TagUser"),
    ("untag_user", "iam:UntagUser"),
    ("quarantine_access_key", "iam:UpdateAccessKey"),
    ("require_password_reset", "iam:UpdateLoginProfile"),
    ("rotate_access_key", "iam:CreateAccessKey"),
    ("rotate_access_key", "iam:TagUser"),
    ("rotate_access_key", "secretsmanager:CreateSecret"),
    ("rotate_access_key", "secretsmanager:PutSecretValue"),
    ("rotate_access_key", "secretsmanager:TagResource"),
    ("rotate_access_key", "ssm:PutParameter"),
    ("deactivate_rotated_key", "iam:UpdateAccessKey"),
    ("delete_rotated_key", "iam:DeleteAccessKey"),
    ("set_rotation_phase", "iam:TagUser"),
    ("clear_rotation_tag", "iam:UntagUser"),
    ("reactivate_access_key", "iam:UpdateAccessKey"),
    ("delete_server_certificate", "iam:DeleteServerCertificate"),
    ("detach_user_policy", "iam:DetachUserPolicy"),
    ("detach_group_policy", "iam:DetachGroupPolicy"),
    ("detach_role_policy", "iam:DetachRolePolicy"),
    ("move_user_policy_to_group", "iam:CreateGroup"),
    ("move_user_policy_to_group", "iam:AttachGroupPolicy"),
    ("move_user_policy_to_group", "iam:AddUserToGroup"),
    ("move_user_policy_to_group", "iam:DetachUserPolicy"),
];

// ---- The AWS calls the code makes, read from src/ (the other source of truth) ----

/// The variable or field an SDK client is called through, and its IAM service prefix. A
/// chain on another name is resolved through its `let` in the same file, else through the
/// one `aws_sdk_*` crate the file names.
const CLIENT_NAMES: &[(&str, &str)] = &[
    ("iam", "iam"),
    ("sts", "sts"),
    ("sqs", "sqs"),
    ("sns", "sns"),
    ("ssm", "ssm"),
    ("sm", "secretsmanager"),
    ("secrets", "secretsmanager"),
    ("secretsmanager", "secretsmanager"),
    ("cloudtrail", "cloudtrail"),
    ("hub", "securityhub"),
    ("securityhub", "securityhub"),
    ("accessanalyzer", "access-analyzer"),
    ("organizations", "organizations"),
];

/// Non-test Rust sources under src/ (path, text): `tests.rs`, `testkit.rs` and inline
/// `#[cfg(test)] mod tests` blocks (always at a file's end) are left out.
fn library_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs")
                && !matches!(
                    p.file_name().and_then(|n| n.to_str()),
                    Some("tests.rs" | "testkit.rs")
                )
            {
                let text = read(&p);
                let text = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                };
                let rel = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
                out.push((rel, text));
            }
        }
    }
    let mut out = vec![];
    walk(&root().join("src"), &mut out);
    out
}

/// Walk a method chain backwards from byte `end` (just before a `.`): the first method
/// of the chain and the name it is called on, e.g. `self.clients.iam.get_user().user_name(u)`
/// gives (`iam`, `get_user`), and so does `clients.iam().get_user()` (a client accessor).
/// `None` when the chain does not start at a name.
fn chain_head(s: &[u8], mut end: usize) -> Option<(String, Option<String>)> {
    let ident = |s: &[u8], mut i: usize| {
        let stop = i;
        while i > 0 && (s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_') {
            i -= 1;
        }
        (String::from_utf8_lossy(&s[i..stop]).to_string(), i)
    };
    let skip_ws = |s: &[u8], mut i: usize| {
        while i > 0 && s[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        i
    };
    let mut first_method = None;
    loop {
        end = skip_ws(s, end);
        if end == 0 {
            return None;
        }
        if s[end - 1] == b')' {
            // a call: skip its arguments
            let mut depth = 0usize;
            let mut i = end;
            while i > 0 {
                i -= 1;
                match s[i] {
                    b')' => depth += 1,
                    b'(' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let no_args = i + 2 == end;
            let (name, mut start) = ident(s, i);
            if name.is_empty() {
                return None;
            }
            // A client accessor (`clients.cloudtrail()`): the client is the receiver.
            if no_args && first_method.is_some() && CLIENT_NAMES.iter().any(|(n, _)| *n == name) {
                return Some((name, first_method));
            }
            if start >= 2 && &s[start - 2..start] == b"r#" {
                start -= 2; // a raw identifier: `.r#type(...)`
            }
            first_method = Some(name);
            end = skip_ws(s, start);
            if end == 0 || s[end - 1] != b'.' {
                return None; // a function call, not a method on a client
            }
            end -= 1;
        } else {
            let (name, _) = ident(s, end);
            return (!name.is_empty()).then_some((name, first_method));
        }
    }
}

/// "get_account_authorization_details" → "getaccountauthorizationdetails": IAM action names
/// are case-insensitive, and the SDK spells acronyms differently (ListMfaDevices).
fn op_key(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_lowercase()
}

/// Every AWS operation the code calls, as `service:operation_key` (see [`op_key`]) with the
/// files calling it: each fluent chain ending in `.send()`, `.customize()` or
/// `.into_paginator()`.
fn sdk_calls_in_source() -> BTreeMap<String, BTreeSet<String>> {
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = vec![];
    for (path, text) in library_sources() {
        let s = text.as_bytes();
        let crates: BTreeSet<&str> = text
            .match_indices("aws_sdk_")
            .map(|(i, _)| {
                let rest = &text[i + 8..];
                &rest[..rest
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(rest.len())]
            })
            .collect();
        for terminator in [".send()", ".customize()", ".into_paginator()"] {
            for (i, _) in text.match_indices(terminator) {
                let Some((mut recv, mut op)) = chain_head(s, i) else {
                    continue;
                };
                // A builder kept in a variable: `let mut req = iam.op();` then `req.send()`.
                if op.is_none() || !CLIENT_NAMES.iter().any(|(n, _)| *n == recv) {
                    for pat in [format!("let mut {recv} = "), format!("let {recv} = ")] {
                        if let Some(j) = text[..i].rfind(&pat) {
                            let stmt_end = j + text[j..].find(';').unwrap_or(text.len() - j);
                            let stmt = &text[j + pat.len()..stmt_end];
                            let head = stmt.find("()").map(|k| j + pat.len() + k + 2);
                            if let Some((r, Some(o))) = head.and_then(|h| chain_head(s, h)) {
                                (recv, op) = (r, Some(o));
                            }
                            break;
                        }
                    }
                }
                let Some(op) = op else { continue };
                let service = CLIENT_NAMES
                    .iter()
                    .find(|(n, _)| *n == recv)
                    .map(|(_, svc)| svc.to_string())
                    .or_else(|| {
                        (crates.len() == 1).then(|| crates.iter().next().unwrap().to_string())
                    });
                match service {
                    Some(svc) => {
                        calls
                            .entry(format!("{svc}:{}", op_key(&op)))
                            .or_default()
                            .insert(path.clone());
                    }
                    // Not an AWS client (e.g. a channel): only a problem in a file using one.
                    None if !crates.is_empty() => problems.push(format!(
                        "{path}: `{recv}.{op}()...{terminator}`: add `{recv}` to CLIENT_NAMES"
                    )),
                    None => {}
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    calls
}

#[test]
fn sdk_call_scanner_finds_clients_builders_and_paginators() {
    let src = "let out = self.clients.iam\n    .get_user()\n    .user_name(name.as_str())\n    .send()\n    .await?;\n\
               let mut req = client\n    .publish()\n    .r#type(m);\nreq = req.subject(s);\nlet call = req.customize().send();\n\
               tx.send(()); foo(x).send();";
    let b = src.as_bytes();
    let at = |t: &str| src.find(t).unwrap();
    assert_eq!(
        chain_head(b, at(".send()")),
        Some(("iam".to_string(), Some("get_user".to_string())))
    );
    assert_eq!(
        chain_head(b, at(".customize()")),
        Some(("req".to_string(), None))
    );
    assert_eq!(
        chain_head(b, at(".send(())")),
        None.or(Some(("tx".to_string(), None)))
    );
    assert_eq!(chain_head(b, src.rfind(".send()").unwrap()), None);
    assert_eq!(
        chain_head(b, at(";\nreq = ")),
        Some(("client".to_string(), Some("publish".to_string())))
    );
    // A client behind an accessor method (the lazily built ones of `Clients`).
    let acc =
        "let page = caller\n    .organizations()\n    .list_accounts()\n    .send()\n    .await;";
    assert_eq!(
        chain_head(acc.as_bytes(), acc.find(".send()").unwrap()),
        Some((
            "organizations".to_string(),
            Some("list_accounts".to_string())
        ))
    );
    assert_eq!(op_key("list_mfa_devices"), op_key("ListMFADevices"));
    // What the code calls today, including a builder kept in a variable (SNS Publish,
    // UpdateAccountPasswordPolicy) and a paginated read.
    let calls = sdk_calls_in_source();
    for a in [
        "iam:GetUser",
        "iam:ListAccessKeys",
        "iam:UpdateAccountPasswordPolicy",
        "iam:GetAccountAuthorizationDetails",
        "iam:CreateAccessKey",
        "secretsmanager:PutSecretValue",
        "ssm:PutParameter",
        "sns:Publish",
        "sqs:ReceiveMessage",
        "cloudtrail:LookupEvents",
        "sts:GetCallerIdentity",
    ] {
        let (svc, op) = a.split_once(':').unwrap();
        assert!(
            calls.contains_key(&format!("{svc}:{}", op_key(op))),
            "{a} not found in src/: {:?}",
            calls.keys()
        );
    }
}

/// Every AWS call in the code is granted by the policy, and counted under its own
/// `operation` label of `iam_warden_aws_calls_total` (not `other`).
#[test]
fn every_sdk_call_in_the_code_is_granted_and_counted() {
    let policy = iam_policy();
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .expect("Statement array")
        .iter()
        .flat_map(|st| one_or_many(&st["Action"]))
        .map(|a| {
            let (svc, op) = a.split_once(':').unwrap_or((&a, ""));
            format!("{svc}:{}", op_key(op))
        })
        .collect();
    let counted: BTreeSet<String> = label_values("iam_warden_aws_calls_total", "operation")
        .iter()
        .map(|o| op_key(o))
        .collect();
    let mut problems = vec![];
    for (call, files) in sdk_calls_in_source() {
        if !granted.contains(&call) {
            problems.push(format!(
                "{call} (called in {files:?}) is not granted by deploy/iam/iam-warden-policy.json"
            ));
        }
        let op = call.split_once(':').map_or("", |(_, o)| o);
        if !counted.contains(op) {
            problems.push(format!(
                "{call} (called in {files:?}) is not in metrics::AWS_OPERATIONS"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every write action the daemon counts has its IAM API call above (and so in the policy).
#[test]
fn every_counted_write_action_has_its_iam_call() {
    let counted: BTreeSet<String> = label_values("iam_warden_writes_total", "action")
        .into_iter()
        .collect();
    let mapped: BTreeSet<String> = WRITE_API.iter().map(|(a, _)| a.to_string()).collect();
    assert_eq!(
        counted, mapped,
        "iam_warden_writes_total{{action}} (the registry) vs. WRITE_API"
    );
}

/// Calls the daemon makes to observe the account and receive events.
const REQUIRED_READS: &[&str] = &[
    "iam:GetAccountAuthorizationDetails",
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccountPasswordPolicy",
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GetLoginProfile",
    "iam:ListMFADevices",
    "iam:ListAttachedUserPolicies",
    "iam:ListGroupsForUser",
    "iam:ListUserTags",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
    "cloudtrail:LookupEvents",
    "sts:GetCallerIdentity",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
];

/// KMS calls made on the daemon's behalf by Secrets Manager, SSM and SNS when the secret,
/// parameter or topic uses a customer-managed key (`rotation.kms_key_id`); no SDK call of
/// the code names them, so they are listed here.
const KMS_VIA_SERVICE: &[&str] = &["kms:GenerateDataKey", "kms:Decrypt"];

fn is_read(action: &str) -> bool {
    let name = action.split_once(':').map_or(action, |(_, n)| n);
    ["Get", "List", "Generate", "LookupEvents", "ReceiveMessage"]
        .iter()
        .any(|p| name.starts_with(p))
        || action == "sqs:DeleteMessage"
        || action == "sqs:ChangeMessageVisibility"
}

#[test]
fn iam_policy_is_valid_and_least_privilege() {
    let policy = iam_policy();
    assert_eq!(policy["Version"], "2012-10-17");
    let compact = serde_json::to_string(&policy).unwrap();
    assert!(
        compact.len() <= 6144,
        "a managed policy may have 6144 characters, this has {}",
        compact.len()
    );

    let mut sids = BTreeSet::new();
    let mut granted: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for st in policy["Statement"].as_array().expect("Statement array") {
        let sid = str_at(st, "/Sid");
        assert!(
            sid.chars().all(|c| c.is_ascii_alphanumeric()),
            "Sid {sid} must be alphanumeric"
        );
        assert!(sids.insert(sid), "duplicate Sid {sid}");
        assert_eq!(st["Effect"], "Allow", "{sid}");
        assert!(
            st.get("NotAction").is_none() && st.get("NotResource").is_none(),
            "{sid}: no Not*"
        );
        let resources = one_or_many(&st["Resource"]);
        assert!(!resources.is_empty(), "{sid}: Resource");
        for r in &resources {
            assert!(r == "*" || r.starts_with("arn:aws:"), "{sid}: resource {r}");
        }
        for action in one_or_many(&st["Action"]) {
            let (service, name) = action
                .split_once(':')
                .unwrap_or_else(|| panic!("{sid}: action {action}"));
            assert!(
                !service.is_empty() && !name.is_empty() && !action.contains('*'),
                "{sid}: {action}"
            );
            granted.entry(action).or_default().push(st);
        }
    }

    for action in REQUIRED_READS
        .iter()
        .copied()
        .chain(WRITE_API.iter().map(|(_, a)| *a))
        .chain(KMS_VIA_SERVICE.iter().copied())
    {
        assert!(
            granted.contains_key(action),
            "the policy does not grant {action}"
        );
    }
    // Writes: the counted IAM writes, and every other call of the code that is not a read
    // (e.g. sns:Publish, iam:SetDefaultPolicyVersion when settling an unclear write).
    let in_code = sdk_calls_in_source();
    let mut writes: BTreeSet<&str> = WRITE_API.iter().map(|(_, a)| *a).collect();
    let code_writes: Vec<String> = granted
        .keys()
        .filter(|a| {
            let (svc, op) = a.split_once(':').unwrap();
            !is_read(a) && in_code.contains_key(&format!("{svc}:{}", op_key(op)))
        })
        .cloned()
        .collect();
    writes.extend(code_writes.iter().map(String::as_str));
    for (action, statements) in &granted {
        if KMS_VIA_SERVICE.contains(&action.as_str()) {
            for st in statements {
                let via = one_or_many(
                    st.pointer("/Condition/StringLike/kms:ViaService")
                        .unwrap_or(&Value::Null),
                );
                assert!(
                    !via.is_empty()
                        && via.iter().all(|v| ["secretsmanager.", "ssm.", "sns."]
                            .iter()
                            .any(|s| v.starts_with(s) && v.ends_with(".amazonaws.com"))),
                    "{action} must be limited with kms:ViaService to Secrets Manager, SSM and SNS, is {via:?}"
                );
            }
            continue;
        }
        assert!(
            is_read(action) || writes.contains(action.as_str()),
            "{action} is granted but neither the code nor an iam_warden_writes_total action needs it"
        );
        if writes.contains(action.as_str()) && action != "iam:UpdateAccountPasswordPolicy" {
            for st in statements {
                assert!(
                    !one_or_many(&st["Resource"]).contains(&"*".to_string()),
                    "{action} must be scoped to resources, not *"
                );
            }
        }
        if action.starts_with("iam:Attach") {
            for st in statements {
                // The one exception, opt-in (cis.move_direct_policies_to_groups): a user's
                // directly attached policy moves to a group under the baseline path, so
                // any policy may be attached there (the README says so).
                if st["Sid"] == "MoveDirectUserPoliciesToGroupsOptIn" {
                    assert!(
                        one_or_many(&st["Resource"])
                            .iter()
                            .filter(|r| r.contains(":group/"))
                            .all(|r| r == "arn:aws:iam::*:group/iam-warden/*"),
                        "{action} for moved policies must be limited to the baseline path's groups"
                    );
                    continue;
                }
                assert!(
                    st.pointer("/Condition/ArnLike/iam:PolicyARN").is_some(),
                    "{action} must be limited to the baseline policies with iam:PolicyARN"
                );
            }
        }
    }

    // IAM grammar and action names: cfn-lint validates policy documents (E3510…)
    // and knows every IAM action (W3037).
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("iam-warden-policy.template.json");
    let doc = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "IamWardenPolicy": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": { "PolicyDocument": policy }
            }
        }
    });
    fs::write(&template, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let (mut cmd, hint) = python();
    cmd.args([
        "-c",
        "import sys\ntry:\n    from cfnlint.runner import main\nexcept ImportError:\n    \
         sys.exit('cfn-lint is missing from ' + sys.executable + ': pip install cfn-lint')\n\
         sys.argv = ['cfn-lint', sys.argv[1]]\nsys.exit(main())",
    ])
    .arg(&template);
    run_ok(&mut cmd, &hint);
}

// ---------------------------------------------------------------------------------
// Container image
// ---------------------------------------------------------------------------------

/// Dockerfile instructions (continuations joined), with global ARG defaults applied to FROM.
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&deploy("container/Dockerfile"));
    let mut out = vec![];
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let (inst, rest) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        out.push((inst.to_ascii_uppercase(), rest.trim().to_string()));
        pending.clear();
    }
    let mut args = BTreeMap::new();
    let mut seen_from = false;
    for (inst, rest) in out.iter_mut() {
        if inst == "ARG" && !seen_from {
            if let Some((k, v)) = rest.split_once('=') {
                args.insert(format!("${{{k}}}"), v.to_string());
            }
        } else if inst == "FROM" {
            seen_from = true;
            for (k, v) in &args {
                *rest = rest.replace(k, v);
            }
        }
    }
    out
}

#[test]
fn dockerfile_builds_locked_and_runs_as_nonroot() {
    let inst = dockerfile();
    let froms: Vec<usize> = inst
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(froms.len() >= 2, "multi-stage build expected");
    let builder = &inst[froms[0]].1;
    assert!(
        builder.starts_with("rust:1-bookworm ") && builder.ends_with(" AS builder"),
        "builder: {builder}"
    );
    let build_stage = &inst[froms[0]..froms[froms.len() - 1]];
    let runtime_stage = &inst[froms[froms.len() - 1]..];
    assert!(
        build_stage
            .iter()
            .any(|(i, r)| i == "RUN" && r.contains("cargo build --release --locked")),
        "the builder runs cargo build --release --locked"
    );
    // Everything the builder copies from the context exists in the repository.
    for (_, rest) in build_stage.iter().filter(|(i, _)| i == "COPY") {
        let parts: Vec<&str> = rest
            .split_whitespace()
            .filter(|p| !p.starts_with("--"))
            .collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
        }
    }
    let runtime = &runtime_stage[0].1;
    assert!(
        runtime.starts_with("gcr.io/distroless/cc") || runtime.starts_with("debian:bookworm-slim"),
        "runtime image: {runtime}"
    );
    if runtime.starts_with("debian:") {
        assert!(runtime_stage
            .iter()
            .any(|(i, r)| i == "RUN" && r.contains("ca-certificates")));
    }
    let last = |name: &str| -> String {
        runtime_stage
            .iter()
            .rev()
            .find(|(i, _)| i == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    assert!(
        ["65532", "65532:65532"].contains(&last("USER").as_str()),
        "USER {}",
        last("USER")
    );
    assert!(
        last("EXPOSE")
            .split_whitespace()
            .any(|p| p == PORT.to_string()),
        "EXPOSE {PORT}"
    );
    let entrypoint: Value =
        serde_json::from_str(&last("ENTRYPOINT")).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint, serde_json::json!([BINARY]));
    let cmd: Value = serde_json::from_str(&last("CMD")).expect("CMD in exec form");
    assert_eq!(cmd, serde_json::json!(["run", "--config", CONFIG_PATH]));
    assert!(
        runtime_stage
            .iter()
            .any(|(i, r)| i == "COPY" && r.contains("--from=builder") && r.ends_with(BINARY)),
        "the binary is copied from the builder to {BINARY}"
    );
}

/// The image's state directory is private to the runtime user: created 0700 and owned by
/// it in the builder, copied with that owner.
#[test]
fn dockerfile_state_directory_is_private() {
    let inst = dockerfile();
    let staged = format!("/out{STATE_DIR}");
    let install = inst
        .iter()
        .filter(|(i, _)| i == "RUN")
        .flat_map(|(_, r)| r.split("&&"))
        .map(str::trim)
        .find(|c| c.starts_with("install -d") && c.split_whitespace().any(|w| w == staged))
        .unwrap_or_else(|| panic!("no `install -d ... {staged}` in the Dockerfile"));
    let words: Vec<&str> = install.split_whitespace().collect();
    let flag = |f: &str| {
        words
            .windows(2)
            .find(|w| w[0] == f)
            .map(|w| w[1])
            .unwrap_or_default()
    };
    assert_eq!(flag("-m"), "0700", "{install}");
    assert_eq!(flag("-o"), "65532", "{install}");
    assert_eq!(flag("-g"), "65532", "{install}");
    assert!(
        inst.iter().any(|(i, r)| i == "COPY"
            && r.contains("--chown=65532:65532")
            && r.split_whitespace().any(|w| w == staged)),
        "the state directory is copied with its owner"
    );
}

// ---------------------------------------------------------------------------------
// CloudFormation (organization mode): deploy/cloudformation/
// ---------------------------------------------------------------------------------

/// The statements of deploy/iam/iam-warden-policy.json that only the account running
/// iam-warden needs; the member role has every other one.
const CALLER_ONLY_SIDS: &[&str] = &["DiscoverOrganizationAccounts", "AssumeRoleInMemberAccounts"];

fn cfn(rel: &str) -> PathBuf {
    deploy("cloudformation").join(rel)
}

/// Runs the real cfn-lint (from the Python of `python()`) on the templates.
fn cfn_lint(paths: &[PathBuf]) {
    let (mut cmd, hint) = python();
    cmd.args([
        "-c",
        "import sys\ntry:\n    from cfnlint.runner import main\nexcept ImportError:\n    \
         sys.exit('cfn-lint is missing from ' + sys.executable + ': pip install cfn-lint')\n\
         sys.argv = ['cfn-lint'] + sys.argv[1:]\nsys.exit(main())",
    ])
    .args(paths);
    run_ok(&mut cmd, &hint);
}

/// A template as JSON, the short-form intrinsics (`!Ref x`, `!GetAtt A.B`, `!If [...]`)
/// turned into their long form (`{"Ref": "x"}`, `{"Fn::GetAtt": ["A", "B"]}`, ...).
fn cfn_template(path: &Path) -> Value {
    let mut docs = yaml_files_with(&[path.to_path_buf()], true).remove(0);
    assert_eq!(docs.len(), 1, "{}: one YAML document", path.display());
    docs.remove(0)
}

/// A template with its parameters (defaults, then `given`) and conditions applied:
/// `Ref` to a parameter is its value, `Ref: AWS::NoValue` and resources whose condition
/// is false are gone, `Fn::If` is the branch taken. `Ref`/`Fn::GetAtt` of resources and
/// pseudo parameters other than `AWS::NoValue` stay as they are.
fn cfn_resolve(template: &Value, given: &[(&str, &str)]) -> Value {
    let mut params: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(ps) = template["Parameters"].as_object() {
        for (name, p) in ps {
            if let Some(d) = p.get("Default") {
                params.insert(name.clone(), d.clone());
            }
        }
    }
    for (k, v) in given {
        assert!(
            template["Parameters"].get(*k).is_some(),
            "no parameter {k} in the template"
        );
        params.insert(k.to_string(), Value::from(*v));
    }
    let mut conds: BTreeMap<String, bool> = BTreeMap::new();
    if let Some(cs) = template["Conditions"].as_object() {
        // Conditions may name earlier ones; a few passes settle them.
        for _ in 0..cs.len() {
            for (name, c) in cs {
                if let Some(b) = cfn_condition(c, &params, &conds) {
                    conds.insert(name.clone(), b);
                }
            }
        }
        assert_eq!(conds.len(), cs.len(), "unresolved conditions: {cs:?}");
    }
    let mut out = template.clone();
    if let Some(resources) = out["Resources"].as_object_mut() {
        resources.retain(|_, r| {
            r.get("Condition")
                .and_then(Value::as_str)
                .is_none_or(|c| conds[c])
        });
    }
    cfn_value(&out, &params, &conds).expect("the template itself")
}

fn cfn_condition(
    v: &Value,
    params: &BTreeMap<String, Value>,
    conds: &BTreeMap<String, bool>,
) -> Option<bool> {
    let obj = v.as_object().filter(|o| o.len() == 1)?;
    let (f, args) = obj.iter().next().unwrap();
    let args = args.as_array();
    let arg = |i: usize| args.and_then(|a| a.get(i)).cloned().unwrap_or(Value::Null);
    match f.as_str() {
        "Condition" => conds.get(obj[f].as_str()?).copied(),
        "Fn::Not" => cfn_condition(&arg(0), params, conds).map(|b| !b),
        "Fn::And" => args?
            .iter()
            .map(|c| cfn_condition(c, params, conds))
            .collect::<Option<Vec<bool>>>()
            .map(|v| v.iter().all(|b| *b)),
        "Fn::Or" => args?
            .iter()
            .map(|c| cfn_condition(c, params, conds))
            .collect::<Option<Vec<bool>>>()
            .map(|v| v.iter().any(|b| *b)),
        "Fn::Equals" => {
            let a = cfn_value(&arg(0), params, conds)?;
            let b = cfn_value(&arg(1), params, conds)?;
            Some(a == b)
        }
        _ => None,
    }
}

/// `None`: the value is `AWS::NoValue` (the key or element is dropped).
fn cfn_value(
    v: &Value,
    params: &BTreeMap<String, Value>,
    conds: &BTreeMap<String, bool>,
) -> Option<Value> {
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("Ref") => {
            let name = o["Ref"].as_str().expect("Ref of a name");
            if name == "AWS::NoValue" {
                None
            } else {
                Some(params.get(name).cloned().unwrap_or_else(|| v.clone()))
            }
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("Fn::If") => {
            let a = o["Fn::If"].as_array().expect("Fn::If [cond, then, else]");
            let c = a[0].as_str().expect("Fn::If condition name");
            let taken = if *conds
                .get(c)
                .unwrap_or_else(|| panic!("Fn::If of unknown condition {c}"))
            {
                &a[1]
            } else {
                &a[2]
            };
            cfn_value(taken, params, conds)
        }
        Value::Object(o) => Some(Value::Object(
            o.iter()
                .filter_map(|(k, x)| cfn_value(x, params, conds).map(|x| (k.clone(), x)))
                .collect(),
        )),
        Value::Array(a) => Some(Value::Array(
            a.iter()
                .filter_map(|x| cfn_value(x, params, conds))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// The resources of `kind` in a (resolved) template: (logical id, resource).
fn cfn_resources<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

fn get_att(id: &str, attr: &str) -> Value {
    serde_json::json!({ "Fn::GetAtt": [id, attr] })
}

fn cfn_ref(name: &str) -> Value {
    serde_json::json!({ "Ref": name })
}

const WARDEN_ARN: &str = "arn:aws:iam::111122223333:role/iam-warden";

#[test]
fn cloudformation_templates_pass_cfn_lint() {
    let mut files: Vec<PathBuf> = fs::read_dir(deploy("cloudformation"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for t in ["management.yaml", "member-role.yaml"] {
        assert!(names.iter().any(|n| n == t), "no {t} in {names:?}");
    }
    cfn_lint(&files);
    // StackSet-ready: no account id (12 digits) written into any resource.
    for path in &files {
        let t = cfn_template(path);
        let text = serde_json::to_string(&t["Resources"]).unwrap();
        let digits: Vec<&str> = text
            .split(|c: char| !c.is_ascii_digit())
            .filter(|d| d.len() == 12)
            .collect();
        assert!(
            digits.is_empty(),
            "{}: account ids in resources: {digits:?}; make them parameters",
            path.display()
        );
    }
}

#[test]
fn member_role_policy_is_the_iam_policy_without_the_callers_statements() {
    let t = cfn_resolve(
        &cfn_template(&cfn("member-role.yaml")),
        &[("WardenPrincipalArn", WARDEN_ARN)],
    );
    let roles: Vec<_> = cfn_resources(&t, "AWS::IAM::Role")
        .into_iter()
        .filter(|(_, r)| r.pointer("/Properties/RoleName").is_some())
        .collect();
    assert_eq!(roles.len(), 1, "one named role: {roles:?}");
    let role = &roles[0].1["Properties"];
    // The default role name is iam-warden's default accounts.role_name.
    assert_eq!(
        role["RoleName"],
        iam_warden::config::Config::default()
            .accounts
            .role_name
            .as_str()
    );
    let policies = role["Policies"].as_array().expect("inline Policies");
    assert_eq!(policies.len(), 1, "one inline policy");
    let in_template = &policies[0]["PolicyDocument"];
    let source = iam_policy();
    assert_eq!(in_template["Version"], source["Version"]);
    let template_st = in_template["Statement"].as_array().expect("Statement");
    let source_st = source["Statement"].as_array().unwrap();
    let sid = |s: &Value| str_at(s, "/Sid").to_string();
    let template_sids: BTreeSet<String> = template_st.iter().map(sid).collect();
    let left_out: BTreeSet<String> = source_st
        .iter()
        .map(sid)
        .filter(|s| !template_sids.contains(s))
        .collect();
    let caller_only: BTreeSet<String> = CALLER_ONLY_SIDS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        left_out, caller_only,
        "the member role has every statement of deploy/iam/iam-warden-policy.json but the caller's"
    );
    let expected: Vec<&Value> = source_st
        .iter()
        .filter(|s| !caller_only.contains(&sid(s)))
        .collect();
    let got: Vec<&Value> = template_st.iter().collect();
    assert_eq!(
        got, expected,
        "member-role.yaml's policy differs from deploy/iam/iam-warden-policy.json (statements, in order)"
    );
    // An inline role policy may have 10,240 characters (all inline policies of the role).
    let size = serde_json::to_string(in_template).unwrap().len();
    assert!(size <= 10_240, "the inline policy has {size} characters");
}

#[test]
fn member_role_trust_requires_the_external_id_only_when_given() {
    let raw = cfn_template(&cfn("member-role.yaml"));
    assert_eq!(raw["Parameters"]["ExternalId"]["Default"], "");
    assert_eq!(raw["Parameters"]["ExternalId"]["NoEcho"], true);
    assert!(
        raw["Parameters"]["WardenPrincipalArn"]
            .get("Default")
            .is_none(),
        "the iam-warden principal has no default: each installation names its own"
    );
    let trust = |given: &[(&str, &str)]| -> Value {
        let t = cfn_resolve(&raw, given);
        let roles: Vec<_> = cfn_resources(&t, "AWS::IAM::Role")
            .into_iter()
            .filter(|(_, r)| r.pointer("/Properties/RoleName").is_some())
            .collect();
        let st = roles[0]
            .1
            .pointer("/Properties/AssumeRolePolicyDocument/Statement")
            .and_then(Value::as_array)
            .expect("trust statements");
        assert_eq!(st.len(), 1, "one trust statement: {st:?}");
        assert_eq!(st[0]["Effect"], "Allow");
        assert_eq!(st[0]["Action"], "sts:AssumeRole");
        assert_eq!(
            st[0]["Principal"],
            serde_json::json!({ "AWS": WARDEN_ARN }),
            "only the iam-warden principal"
        );
        st[0].clone()
    };
    let without = trust(&[("WardenPrincipalArn", WARDEN_ARN)]);
    assert!(
        without.get("Condition").is_none(),
        "no ExternalId given, no condition: {without}"
    );
    let with = trust(&[
        ("WardenPrincipalArn", WARDEN_ARN),
        ("ExternalId", "ext-0123456789"),
    ]);
    assert_eq!(
        with["Condition"],
        serde_json::json!({ "StringEquals": { "sts:ExternalId": "ext-0123456789" } }),
        "the ExternalId given is required"
    );
}

/// EventBridge envelopes the SQS consumer accepts (every IAM event name the daemon knows,
/// a write it has no special name for, an exposed-key Health event) and ones it rejects.
fn sample_events() -> (Vec<Value>, Vec<Value>) {
    use iam_warden::sources::event::{
        EVENTBRIDGE_DETAIL_TYPE, EVENTBRIDGE_SOURCE, IAM_EVENT_SOURCE, KNOWN_EVENT_NAMES,
    };
    let iam = |name: &str, source: &str, detail_type: &str| {
        serde_json::json!({
            "version": "0",
            "id": format!("id-{name}"),
            "detail-type": detail_type,
            "source": source,
            "account": "111122223333",
            "time": "2026-08-01T13:42:21Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.09",
                "eventID": format!("ev-{name}"),
                "eventName": name,
                "eventSource": IAM_EVENT_SOURCE,
                "eventTime": "2026-08-01T13:42:21Z",
                "readOnly": false,
                "requestParameters": { "userName": "bob" },
                "userIdentity": {
                    "type": "IAMUser",
                    "arn": "arn:aws:iam::111122223333:user/alice",
                    "userName": "alice"
                }
            }
        })
    };
    let health = |code: &str| {
        serde_json::json!({
            "version": "0",
            "id": format!("health-{code}"),
            "detail-type": "AWS Health Event",
            "source": "aws.health",
            "account": "111122223333",
            "time": "2026-08-01T13:42:21Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventArn": format!("arn:aws:health:us-east-1::event/RISK/{code}/x"),
                "service": "RISK",
                "eventTypeCode": code,
                "eventTypeCategory": "issue",
                "affectedEntities": [{ "entityValue": "AKIAIOSFODNN7EXAMPLE" }]
            }
        })
    };
    let mut accepted: Vec<Value> = KNOWN_EVENT_NAMES
        .iter()
        .map(|n| iam(n, EVENTBRIDGE_SOURCE, EVENTBRIDGE_DETAIL_TYPE))
        .collect();
    // Any IAM write naming a user makes the daemon look at that user.
    accepted.push(iam(
        "CreateServiceSpecificCredential",
        EVENTBRIDGE_SOURCE,
        EVENTBRIDGE_DETAIL_TYPE,
    ));
    accepted.push(health("AWS_RISK_CREDENTIALS_EXPOSED"));
    let rejected = vec![
        iam("PutObject", "aws.s3", EVENTBRIDGE_DETAIL_TYPE),
        iam(
            "CreateUser",
            EVENTBRIDGE_SOURCE,
            "AWS Service Event via CloudTrail",
        ),
        health("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"),
    ];
    (accepted, rejected)
}

/// Which of the event patterns (name → pattern) match each event, by moto's EventBridge
/// pattern matcher (the emulator the other tests run against).
fn matching_rules(patterns: &BTreeMap<String, Value>, events: &[Value]) -> Vec<BTreeSet<String>> {
    const SCRIPT: &str = r#"
import json, sys
try:
    from moto.events.models import EventPattern
except ImportError:
    sys.exit("moto is missing from " + sys.executable + ": pip install 'moto[server]'")
data = json.load(sys.stdin)
pats = {k: EventPattern.load(json.dumps(p)) for k, p in data["patterns"].items()}
json.dump([[k for k, p in pats.items() if p.matches_event(e)] for e in data["events"]], sys.stdout)
"#;
    let (mut cmd, hint) = python();
    cmd.arg("-c")
        .arg(SCRIPT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run {}: {e}; {hint}", describe(&cmd)),
    };
    let input = serde_json::json!({ "patterns": patterns, "events": events });
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write to the pattern matcher");
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pattern matcher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("matcher output")
}

/// (template, its parameters, groups of rules: each group must match every accepted event).
type RuleCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<Vec<&'a str>>);

#[test]
fn event_rules_match_exactly_what_the_sqs_consumer_accepts() {
    use iam_warden::sources::health::{parse_sqs_message, SqsEvent, HEALTH_PATTERN};
    let (accepted, rejected) = sample_events();
    for e in &accepted {
        let parsed = parse_sqs_message(&e.to_string());
        assert!(parsed.is_ok(), "the consumer rejects {e}: {parsed:?}");
        if let Ok(SqsEvent::CloudTrail(ev)) = parsed {
            let targets = iam_warden::sources::event::targets(&ev, &Default::default());
            assert!(!targets.is_empty(), "{} maps to no work", ev.event_name);
        }
    }
    for e in &rejected {
        assert!(
            parse_sqs_message(&e.to_string()).is_err(),
            "the consumer accepts {e}"
        );
    }
    let health_pattern: Value = serde_json::from_str(HEALTH_PATTERN).unwrap();

    let cases: [RuleCase; 2] = [
        (
            "management.yaml",
            vec![("OrganizationId", "o-exampleorgid")],
            vec![
                vec!["OrganizationIamEvents", "OrganizationExposedKeyEvents"],
                vec!["OwnIamEvents", "OwnExposedKeyEvents"],
            ],
        ),
        (
            "member-role.yaml",
            vec![
                ("WardenPrincipalArn", WARDEN_ARN),
                (
                    "CentralEventBusArn",
                    "arn:aws:events:us-east-1:111122223333:event-bus/iam-warden",
                ),
            ],
            vec![vec!["ForwardIamEvents", "ForwardExposedKeyEvents"]],
        ),
    ];
    for (file, params, groups) in cases {
        let t = cfn_resolve(&cfn_template(&cfn(file)), &params);
        let rules: BTreeMap<String, Value> = cfn_resources(&t, "AWS::Events::Rule")
            .into_iter()
            .map(|(id, r)| {
                assert_eq!(r.pointer("/Properties/State"), Some(&"ENABLED".into()));
                (
                    id.to_string(),
                    r.pointer("/Properties/EventPattern").cloned().unwrap(),
                )
            })
            .collect();
        let in_groups: BTreeSet<String> = groups.iter().flatten().map(|s| s.to_string()).collect();
        assert_eq!(
            rules.keys().cloned().collect::<BTreeSet<_>>(),
            in_groups,
            "{file}: rules"
        );
        for (id, p) in &rules {
            if p["source"] == serde_json::json!(["aws.health"]) {
                assert_eq!(
                    p, &health_pattern,
                    "{file} {id}: sources::health::HEALTH_PATTERN"
                );
            }
        }
        let hits = matching_rules(&rules, &accepted);
        for (e, hit) in accepted.iter().zip(&hits) {
            for g in &groups {
                assert!(
                    g.iter().any(|r| hit.contains(*r)),
                    "{file}: no rule of {g:?} matches {} {}",
                    e["source"],
                    e.pointer("/detail/eventName")
                        .or(e.pointer("/detail/eventTypeCode"))
                        .unwrap()
                );
            }
        }
        let misses = matching_rules(&rules, &rejected);
        for (e, hit) in rejected.iter().zip(&misses) {
            assert!(
                hit.is_empty(),
                "{file}: {hit:?} match {e}, which the consumer rejects"
            );
        }
    }
}

#[test]
fn management_template_wires_queue_dlq_bus_and_policies() {
    let t = cfn_resolve(
        &cfn_template(&cfn("management.yaml")),
        &[("OrganizationId", "o-exampleorgid")],
    );
    let one = |kind: &str| -> (String, Value) {
        let r = cfn_resources(&t, kind);
        assert_eq!(r.len(), 1, "one {kind}");
        (r[0].0.to_string(), r[0].1["Properties"].clone())
    };
    // The queue and its dead-letter queue.
    let queues = cfn_resources(&t, "AWS::SQS::Queue");
    assert_eq!(queues.len(), 2, "the queue and its DLQ");
    let (queue_id, queue) = queues
        .iter()
        .find(|(_, q)| q.pointer("/Properties/RedrivePolicy").is_some())
        .map(|(id, q)| (id.to_string(), q["Properties"].clone()))
        .expect("a queue with a redrive policy");
    let (dlq_id, _) = queues.iter().find(|(id, _)| *id != queue_id).unwrap();
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"],
        get_att(dlq_id, "Arn")
    );
    assert_eq!(queue["RedrivePolicy"]["maxReceiveCount"], 5);
    // Named so that deploy/iam/iam-warden-policy.json lets iam-warden read it.
    let name = queue["QueueName"].as_str().expect("QueueName");
    let consume = iam_policy()["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "ConsumeEventBridgeQueue")
        .cloned()
        .expect("ConsumeEventBridgeQueue");
    let prefix = str_at(&consume, "/Resource")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('*')
        .to_string();
    assert!(
        name.starts_with(&prefix),
        "queue {name} is not readable under the policy's {prefix}*"
    );

    // Every rule sends to the queue; the queue admits exactly those rules.
    let rules = cfn_resources(&t, "AWS::Events::Rule");
    let mut rule_arns = BTreeSet::new();
    for (id, r) in &rules {
        let targets = r.pointer("/Properties/Targets").and_then(Value::as_array);
        assert_eq!(
            targets.map(|t| t.iter().map(|x| x["Arn"].clone()).collect::<Vec<_>>()),
            Some(vec![get_att(&queue_id, "Arn")]),
            "{id} targets the queue"
        );
        rule_arns.insert(get_att(id, "Arn").to_string());
    }
    let (_, qp) = one("AWS::SQS::QueuePolicy");
    assert_eq!(qp["Queues"], serde_json::json!([cfn_ref(&queue_id)]));
    let st = qp
        .pointer("/PolicyDocument/Statement")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(
        st[0]["Principal"],
        serde_json::json!({"Service": "events.amazonaws.com"})
    );
    assert_eq!(st[0]["Action"], "sqs:SendMessage");
    assert_eq!(st[0]["Resource"], get_att(&queue_id, "Arn"));
    let sources: BTreeSet<String> = st[0]
        .pointer("/Condition/ArnEquals/aws:SourceArn")
        .and_then(Value::as_array)
        .expect("aws:SourceArn condition")
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(
        sources, rule_arns,
        "the queue policy names every rule, and only those"
    );

    // The bus: the organization's accounts may put events, nobody else.
    let (bus_id, _) = one("AWS::Events::EventBus");
    let (_, bp) = one("AWS::Events::EventBusPolicy");
    assert_eq!(bp["EventBusName"], cfn_ref(&bus_id));
    assert_eq!(bp["Statement"]["Action"], "events:PutEvents");
    assert_eq!(bp["Statement"]["Resource"], get_att(&bus_id, "Arn"));
    assert_eq!(
        bp["Statement"]["Condition"],
        serde_json::json!({"StringEquals": {"aws:PrincipalOrgID": "o-exampleorgid"}})
    );
    // Rules on the central bus (members' events) and on the default bus (this account's).
    let on_bus = rules
        .iter()
        .filter(|(_, r)| r.pointer("/Properties/EventBusName") == Some(&cfn_ref(&bus_id)))
        .count();
    let on_default = rules
        .iter()
        .filter(|(_, r)| r.pointer("/Properties/EventBusName").is_none())
        .count();
    assert_eq!((on_bus, on_default), (2, 2));

    // What iam-warden and the member stacks need.
    assert_eq!(t["Outputs"]["QueueUrl"]["Value"], cfn_ref(&queue_id));
    assert_eq!(
        t["Outputs"]["EventBusArn"]["Value"],
        get_att(&bus_id, "Arn")
    );
}

#[test]
fn member_forwarding_exists_only_with_a_central_bus_and_targets_it() {
    let raw = cfn_template(&cfn("member-role.yaml"));
    let without = cfn_resolve(&raw, &[("WardenPrincipalArn", WARDEN_ARN)]);
    assert!(cfn_resources(&without, "AWS::Events::Rule").is_empty());
    assert_eq!(
        cfn_resources(&without, "AWS::IAM::Role").len(),
        1,
        "only the iam-warden role without CentralEventBusArn"
    );
    let bus = "arn:aws:events:us-east-1:111122223333:event-bus/iam-warden";
    let with = cfn_resolve(
        &raw,
        &[
            ("WardenPrincipalArn", WARDEN_ARN),
            ("CentralEventBusArn", bus),
        ],
    );
    let rules = cfn_resources(&with, "AWS::Events::Rule");
    assert_eq!(rules.len(), 2);
    let forward_role = cfn_resources(&with, "AWS::IAM::Role")
        .into_iter()
        .find(|(_, r)| r.pointer("/Properties/RoleName").is_none())
        .expect("the forwarding role");
    for (id, r) in &rules {
        let targets = r
            .pointer("/Properties/Targets")
            .and_then(Value::as_array)
            .unwrap();
        assert_eq!(targets.len(), 1, "{id}");
        assert_eq!(targets[0]["Arn"], bus, "{id} targets the central bus");
        assert_eq!(
            targets[0]["RoleArn"],
            get_att(forward_role.0, "Arn"),
            "{id}"
        );
        assert!(
            r.pointer("/Properties/EventBusName").is_none(),
            "{id}: the default bus"
        );
    }
    let p = forward_role.1["Properties"].clone();
    assert_eq!(
        p.pointer("/AssumeRolePolicyDocument/Statement/0/Principal"),
        Some(&serde_json::json!({"Service": "events.amazonaws.com"}))
    );
    let st = p
        .pointer("/Policies/0/PolicyDocument/Statement")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(
        st,
        &vec![
            serde_json::json!({"Effect": "Allow", "Action": "events:PutEvents", "Resource": bus})
        ],
        "the forwarding role may only put events on the central bus"
    );
}

// ---------------------------------------------------------------------------------
// Organization mode: the Kubernetes overlay and the systemd drop-in
// ---------------------------------------------------------------------------------

/// `iam-warden check-config` (the real loader: file, then `IAM_WARDEN_*` variables) of
/// `toml` with `env`; the effective configuration it prints.
fn check_config(toml_text: &str, env: &[(String, String)]) -> toml::Table {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iam-warden.toml");
    fs::write(&file, toml_text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iam-warden"));
    cmd.args(["check-config", "--config"]).arg(&file);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("IAM_WARDEN_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = run_ok(&mut cmd, "cargo builds it");
    out.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("check-config output is TOML: {e}\n{out}"))
}

/// The queue URL the organization examples name: management.yaml's default queue.
fn example_queue_url() -> String {
    let t = cfn_template(&cfn("management.yaml"));
    format!(
        "https://sqs.us-east-1.amazonaws.com/111122223333/{}",
        str_at(&t, "/Parameters/QueueName/Default")
    )
}

#[test]
fn kubernetes_organization_overlay_changes_only_accounts_and_the_queue() {
    let dir = deploy("kubernetes-organization");
    let kustomization = yaml_file(&dir.join("kustomization.yaml"));
    assert_eq!(kustomization["kind"], "Kustomization");
    assert_eq!(
        kustomization["resources"],
        serde_json::json!(["../kubernetes"]),
        "the overlay builds on deploy/kubernetes"
    );
    assert_eq!(
        kustomization["patches"],
        serde_json::json!([{ "path": "configmap.yaml" }])
    );
    let patch = yaml_file(&dir.join("configmap.yaml"));
    let k = K8s::load();
    let base = k.one("ConfigMap");
    for key in [
        "/apiVersion",
        "/kind",
        "/metadata/name",
        "/metadata/namespace",
    ] {
        assert_eq!(
            patch.pointer(key),
            base.pointer(key),
            "the patch must name the base ConfigMap ({key})"
        );
    }
    let keys = |v: &Value| -> BTreeSet<String> {
        v["data"]
            .as_object()
            .expect("data")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(
        keys(&patch),
        keys(base),
        "the patch replaces the same data keys"
    );

    let overlay_text = str_at(&patch, "/data/iam-warden.toml");
    let mut overlay: toml::Table = overlay_text
        .parse()
        .unwrap_or_else(|e| panic!("overlay iam-warden.toml: {e}"));
    let mut base_cfg = configmap_toml();
    // What the overlay sets ...
    let accounts = overlay.remove("accounts").expect("[accounts]");
    assert_eq!(accounts["source"].as_str(), Some("organization"));
    assert_eq!(
        accounts["role_name"].as_str(),
        Some(
            cfn_template(&cfn("member-role.yaml"))["Parameters"]["RoleName"]["Default"]
                .as_str()
                .unwrap()
        ),
        "the member stacks' default RoleName"
    );
    let sqs = overlay["sources"]["sqs"]
        .as_table()
        .expect("[sources.sqs]")
        .clone();
    assert_eq!(
        sqs.get("queue_url").and_then(toml::Value::as_str),
        Some(example_queue_url().as_str())
    );
    // ... and nothing else differs from the base ConfigMap.
    overlay["sources"]["sqs"]
        .as_table_mut()
        .unwrap()
        .remove("queue_url");
    assert!(base_cfg.get("accounts").is_none());
    if let Some(s) = base_cfg
        .get_mut("sources")
        .and_then(|s| s.get_mut("sqs"))
        .and_then(toml::Value::as_table_mut)
    {
        s.remove("queue_url");
    }
    assert_eq!(
        overlay, base_cfg,
        "the overlay's iam-warden.toml differs from the base beyond [accounts] and queue_url"
    );

    // iam-warden's loader accepts it and reads organization mode from it.
    let effective = check_config(overlay_text, &[]);
    assert_eq!(
        effective["accounts"]["source"].as_str(),
        Some("organization")
    );
    assert_eq!(
        effective["sources"]["sqs"]["queue_url"].as_str(),
        Some(example_queue_url().as_str())
    );
    assert_eq!(effective["mode"].as_str(), Some("dry-run"));
}

#[test]
fn systemd_organization_dropin_verifies_and_sets_organization_mode() {
    let name = "organization.conf.example";
    let text = read(&deploy("systemd/iam-warden.service.d").join(name));
    // Installed under a .conf name, it verifies with the unit and the other drop-ins.
    let mut dropins: Vec<(String, String)> = fs::read_dir(deploy("systemd/iam-warden.service.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read(&p),
            )
        })
        .collect();
    dropins.push(("organization.conf".into(), text.clone()));
    systemd_verify(&dropins);
    assert!(
        text.contains(&format!(
            "install -D -m 0644 {name} /etc/systemd/system/iam-warden.service.d/organization.conf"
        )),
        "the drop-in says how to install it under a .conf name"
    );

    let directives = unit_directives(&text);
    assert!(
        directives
            .iter()
            .all(|(s, k, _)| s == "Service" && k == "Environment"),
        "the drop-in only sets IAM_WARDEN_* variables: {directives:?}"
    );
    let env: Vec<(String, String)> = directives
        .iter()
        .map(|(_, _, v)| {
            let (k, v) = v
                .trim_matches('"')
                .split_once('=')
                .expect("Environment=NAME=VALUE");
            assert!(k.starts_with("IAM_WARDEN_"), "{k}");
            (k.to_string(), v.to_string())
        })
        .collect();
    // On top of the documented example config, as the unit runs it.
    let effective = check_config(&read(&root().join("config/iam-warden.toml")), &env);
    assert_eq!(
        effective["accounts"]["source"].as_str(),
        Some("organization")
    );
    assert_eq!(
        effective["accounts"]["role_name"].as_str(),
        Some("iam-warden")
    );
    assert_eq!(
        effective["sources"]["sqs"]["queue_url"].as_str(),
        Some(example_queue_url().as_str())
    );
}
