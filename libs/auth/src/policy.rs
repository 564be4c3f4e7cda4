//! IAM-style identity policies: parsing (`Version`, `Statement` with `Sid`, `Effect`,
//! `Action`/`NotAction`, `Resource`/`NotResource`), evaluation (an explicit Deny wins, nothing
//! allowed means denied), AMP's managed policies, and the `aps:` action and resource of every
//! Hestia route (a route without one is denied).

use serde_json::Value;

/// A policy document IAM would refuse (IAM's `MalformedPolicyDocument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MalformedPolicyDocument: {0}")]
pub struct PolicyError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A list of patterns, or its negation (`NotAction`, `NotResource`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Patterns {
    Any(Vec<String>),
    AllBut(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    actions: Patterns,
    resources: Patterns,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// The outcome of evaluating policies for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A statement denies it.
    ExplicitDeny,
    /// Nothing allows it.
    ImplicitDeny,
}

impl Policy {
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        let bad = |m: &str| PolicyError(m.to_string());
        let doc: Value = serde_json::from_str(json).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let doc = doc
            .as_object()
            .ok_or_else(|| bad("the policy must be an object"))?;
        for key in doc.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(bad(&format!("unknown field {key}")));
            }
        }
        match doc.get("Version").and_then(Value::as_str) {
            Some("2012-10-17" | "2008-10-17") => {}
            Some(v) => return Err(bad(&format!("unsupported Version {v}"))),
            None => return Err(bad("Version is required (2012-10-17)")),
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(o @ Value::Object(_)) => vec![o],
            _ => return Err(bad("Statement must be an object or a list of objects")),
        };
        if statements.is_empty() {
            return Err(bad("Statement must not be empty"));
        }
        let statements = statements
            .into_iter()
            .map(parse_statement)
            .collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }
}

fn parse_statement(v: &Value) -> Result<Statement, PolicyError> {
    let bad = |m: &str| PolicyError(m.to_string());
    let s = v
        .as_object()
        .ok_or_else(|| bad("each Statement must be an object"))?;
    for key in s.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource" => {}
            "Condition" | "Principal" | "NotPrincipal" => {
                return Err(bad(&format!(
                    "{key} is not supported in identity policies here"
                )))
            }
            _ => return Err(bad(&format!("unknown Statement field {key}"))),
        }
    }
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Err(bad("Effect must be Allow or Deny")),
    };
    let pick = |yes: &str, no: &str| -> Result<Patterns, PolicyError> {
        match (s.get(yes), s.get(no)) {
            (Some(v), None) => Ok(Patterns::Any(strings(v, yes)?)),
            (None, Some(v)) => Ok(Patterns::AllBut(strings(v, no)?)),
            _ => Err(bad(&format!(
                "a Statement needs exactly one of {yes} and {no}"
            ))),
        }
    };
    let actions = pick("Action", "NotAction")?;
    for a in patterns(&actions) {
        if a != "*" && !a.contains(':') {
            return Err(bad(&format!(
                "action {a} must be service:Action (e.g. aps:QueryMetrics)"
            )));
        }
    }
    Ok(Statement {
        sid: s.get("Sid").and_then(Value::as_str).map(str::to_string),
        effect,
        actions,
        resources: pick("Resource", "NotResource")?,
    })
}

fn patterns(p: &Patterns) -> &[String] {
    match p {
        Patterns::Any(v) | Patterns::AllBut(v) => v,
    }
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, PolicyError> {
    let bad = || PolicyError(format!("{field} must be a string or a list of strings"));
    let out: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad()),
    };
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// `*` matches any run of characters, `?` exactly one.
pub fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let eq = |a: char, b: char| {
        if case_insensitive {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl Statement {
    fn applies(&self, action: &str, resource: &str) -> bool {
        let action_hit = |ps: &[String]| ps.iter().any(|p| wildcard_match(p, action, true));
        let resource_hit = |ps: &[String]| ps.iter().any(|p| wildcard_match(p, resource, false));
        let a = match &self.actions {
            Patterns::Any(ps) => action_hit(ps),
            Patterns::AllBut(ps) => !action_hit(ps),
        };
        let r = match &self.resources {
            Patterns::Any(ps) => resource_hit(ps),
            Patterns::AllBut(ps) => !resource_hit(ps),
        };
        a && r
    }
}

/// Evaluates every statement of `policies` for `action` (e.g. `aps:QueryMetrics`) on `resource`
/// (an ARN): an explicit Deny wins over any Allow.
pub fn evaluate(policies: &[Policy], action: &str, resource: &str) -> Decision {
    let mut allowed = false;
    for s in policies.iter().flat_map(|p| &p.statements) {
        if s.applies(action, resource) {
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// AMP's managed policies (seed 000, "Built-in AWS-managed policies").
pub const MANAGED: [&str; 4] = [
    "AmazonPrometheusFullAccess",
    "AmazonPrometheusConsoleFullAccess",
    "AmazonPrometheusQueryAccess",
    "AmazonPrometheusRemoteWriteAccess",
];

pub fn managed(name: &str) -> Option<Policy> {
    let actions: &[&str] = match name {
        crate::identity::ADMINISTRATOR_ACCESS => &["*"],
        "AmazonPrometheusFullAccess" => &["aps:*"],
        "AmazonPrometheusConsoleFullAccess" => &[
            "aps:CreateWorkspace",
            "aps:DescribeWorkspace",
            "aps:UpdateWorkspaceAlias",
            "aps:DeleteWorkspace",
            "aps:ListWorkspaces",
        ],
        "AmazonPrometheusQueryAccess" => &[
            "aps:GetLabels",
            "aps:GetMetricMetadata",
            "aps:GetSeries",
            "aps:QueryMetrics",
        ],
        "AmazonPrometheusRemoteWriteAccess" => &["aps:RemoteWrite"],
        _ => return None,
    };
    Some(Policy {
        statements: vec![Statement {
            sid: None,
            effect: Effect::Allow,
            actions: Patterns::Any(actions.iter().map(|a| a.to_string()).collect()),
            resources: Patterns::Any(vec!["*".into()]),
        }],
    })
}

/// What a request acts on; [`RouteAction::resource`] names it as an ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<'a> {
    /// A workspace, or (`None`) the account's workspaces as a whole (e.g. ListWorkspaces).
    Workspace(Option<&'a str>),
    /// TagResource and friends name their resource by ARN.
    Arn(String),
    /// An IAM user of the caller's account, or all of them.
    User(Option<&'a str>),
    /// The cluster itself: accounts, audit log, limits, voters (operator account only).
    Cluster,
}

/// What a request asks for: the action and the resource it acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAction<'a> {
    pub action: &'static str,
    pub resource: Resource<'a>,
}

impl RouteAction<'_> {
    /// The workspace the request names in its path, if any.
    pub fn workspace(&self) -> Option<&str> {
        match self.resource {
            Resource::Workspace(w) => w,
            _ => None,
        }
    }

    /// Cluster-wide actions only the operator account's users may be allowed.
    pub fn operator_only(&self) -> bool {
        self.resource == Resource::Cluster
    }

    /// The resource ARN policies are matched against, in `account`.
    pub fn resource(&self, region: &str, account: &str) -> String {
        match &self.resource {
            Resource::Workspace(ws) => {
                format!(
                    "arn:aws:aps:{region}:{account}:workspace/{}",
                    ws.unwrap_or("*")
                )
            }
            Resource::Arn(arn) => arn.clone(),
            Resource::User(name) => format!("arn:aws:iam::{account}:user/{}", name.unwrap_or("*")),
            Resource::Cluster => format!("arn:aws:hestia:{region}:{account}:cluster"),
        }
    }
}

/// The action of every public route; `None` for anything else (denied). Paths are matched
/// raw (percent-encoded), as received.
pub fn route_action<'a>(method: &str, path: &'a str) -> Option<RouteAction<'a>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let on = |action, resource| Some(RouteAction { action, resource });
    let ws = |action, id| on(action, Resource::Workspace(Some(id)));
    let cluster = |action| on(action, Resource::Cluster);
    let user = |action, name| on(action, Resource::User(Some(name)));
    let read = matches!(method, "GET" | "POST");
    match (method, parts.as_slice()) {
        ("POST", ["workspaces"]) => on("aps:CreateWorkspace", Resource::Workspace(None)),
        ("GET", ["workspaces"]) => on("aps:ListWorkspaces", Resource::Workspace(None)),
        ("GET", ["workspaces", id]) => ws("aps:DescribeWorkspace", id),
        ("DELETE", ["workspaces", id]) => ws("aps:DeleteWorkspace", id),
        ("POST", ["workspaces", id, "alias"]) => ws("aps:UpdateWorkspaceAlias", id),
        ("GET", ["workspaces", id, "configuration"]) => {
            ws("aps:DescribeWorkspaceConfiguration", id)
        }
        ("PATCH", ["workspaces", id, "configuration"]) => {
            ws("aps:UpdateWorkspaceConfiguration", id)
        }
        ("POST", ["workspaces", id, "tokens"]) => ws("aps:CreateToken", id),
        ("GET", ["workspaces", id, "tokens"]) => ws("aps:ListTokens", id),
        ("DELETE", ["workspaces", id, "tokens", _]) => ws("aps:RevokeToken", id),
        (_, ["workspaces", id, "api", "v1", rest @ ..]) => {
            let action = match rest {
                ["remote_write"] if method == "POST" => "aps:RemoteWrite",
                ["query" | "query_range" | "query_exemplars" | "format_query" | "parse_query"]
                    if read =>
                {
                    "aps:QueryMetrics"
                }
                ["read"] if method == "POST" => "aps:QueryMetrics",
                ["status", "buildinfo"] if method == "GET" => "aps:QueryMetrics",
                ["series"] if read => "aps:GetSeries",
                ["labels"] if read => "aps:GetLabels",
                ["label", _, "values"] if method == "GET" => "aps:GetLabels",
                ["metadata"] if method == "GET" => "aps:GetMetricMetadata",
                _ => return None,
            };
            ws(action, id)
        }
        (_, ["tags", arn]) => {
            let action = match method {
                "GET" => "aps:ListTagsForResource",
                "POST" => "aps:TagResource",
                "DELETE" => "aps:UntagResource",
                _ => return None,
            };
            on(action, Resource::Arn(crate::sigv4::percent_decode(arn)))
        }
        ("POST", ["admin", "users"]) => on("iam:CreateUser", Resource::User(None)),
        ("GET", ["admin", "users"]) => on("iam:ListUsers", Resource::User(None)),
        ("DELETE", ["admin", "users", name]) => user("iam:DeleteUser", name),
        ("POST", ["admin", "users", name, "access-keys"]) => user("iam:CreateAccessKey", name),
        ("GET", ["admin", "users", name, "access-keys"]) => user("iam:ListAccessKeys", name),
        ("DELETE", ["admin", "users", name, "access-keys", _]) => user("iam:DeleteAccessKey", name),
        ("POST", ["admin", "users", name, "policies"]) => user("iam:AttachUserPolicy", name),
        ("GET", ["admin", "users", name, "policies"]) => user("iam:ListAttachedUserPolicies", name),
        ("DELETE", ["admin", "users", name, "policies", _]) => user("iam:DetachUserPolicy", name),
        ("POST", ["admin", "accounts"]) => cluster("hestia:CreateAccount"),
        ("GET", ["admin", "accounts"]) => cluster("hestia:ListAccounts"),
        ("DELETE", ["admin", "accounts", _]) => cluster("hestia:DeleteAccount"),
        ("GET", ["admin", "audit"]) => cluster("hestia:LookupEvents"),
        ("GET", ["admin", "workspaces", _, "limits"]) => cluster("hestia:GetLimits"),
        ("PUT", ["admin", "workspaces", _, "limits"]) => cluster("hestia:PutLimits"),
        ("GET", ["admin", "workspaces", _, "blocks"]) => cluster("hestia:ListBlocks"),
        ("POST", ["admin", "compactor", "compact"]) => cluster("hestia:RunCompaction"),
        ("GET", ["admin", "cluster"]) => cluster("hestia:DescribeCluster"),
        ("POST", ["admin", "cluster", "voters"]) => cluster("hestia:AddVoter"),
        ("DELETE", ["admin", "cluster", "voters", _]) => cluster("hestia:RemoveVoter"),
        ("GET", ["distributor", "ha_tracker"]) => cluster("hestia:DescribeHaTracker"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:aps:us-east-1:123456789012:workspace/ws-1";

    #[test]
    fn wildcards() {
        assert!(wildcard_match("aps:*", "aps:QueryMetrics", true));
        assert!(wildcard_match("APS:query*", "aps:QueryMetrics", true));
        assert!(!wildcard_match("APS:query*", "aps:QueryMetrics", false));
        assert!(wildcard_match("aps:Get?eries", "aps:GetSeries", true));
        assert!(!wildcard_match("aps:Get?eries", "aps:GetSSeries", true));
        assert!(wildcard_match("*ws-?", ARN, false));
        assert!(wildcard_match("arn:*:workspace/*", ARN, false));
        assert!(!wildcard_match("arn:*:workspace/ws-2", ARN, false));
        assert!(wildcard_match("a*b*c", "aXbYbZc", false));
        assert!(!wildcard_match("a*b*c", "aXbYbZ", false));
    }

    #[test]
    fn explicit_deny_wins_and_negations_apply() {
        let p = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[
                {"Sid":"all","Effect":"Allow","Action":"aps:*","Resource":"*"},
                {"Effect":"Deny","Action":["aps:RemoteWrite"],"Resource":"arn:aws:aps:*:*:workspace/ws-1"},
                {"Effect":"Deny","NotAction":"aps:*","Resource":"*"}
            ]}"#,
        )
        .unwrap();
        let ps = [p];
        assert_eq!(evaluate(&ps, "aps:QueryMetrics", ARN), Decision::Allow);
        assert_eq!(
            evaluate(&ps, "aps:RemoteWrite", ARN),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(&ps, "aps:RemoteWrite", &ARN.replace("ws-1", "ws-2")),
            Decision::Allow
        );
        assert_eq!(evaluate(&ps, "s3:GetObject", ARN), Decision::ExplicitDeny);
        let only_other = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"aps:*","NotResource":"*ws-1"}}"#,
        )
        .unwrap();
        assert_eq!(
            evaluate(&[only_other], "aps:QueryMetrics", ARN),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(&[], "aps:QueryMetrics", ARN),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn malformed_documents_are_refused() {
        for (doc, why) in [
            ("[]", "must be an object"),
            (r#"{"Statement":[]}"#, "Version is required"),
            (
                r#"{"Version":"2012-10-17","Statement":[]}"#,
                "must not be empty",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Maybe","Action":"aps:*","Resource":"*"}}"#,
                "Effect must be Allow or Deny",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"aps:*","NotAction":"aps:X","Resource":"*"}}"#,
                "exactly one of Action and NotAction",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"aps:*"}}"#,
                "exactly one of Resource and NotResource",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"QueryMetrics","Resource":"*"}}"#,
                "service:Action",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"aps:*","Resource":"*","Condition":{}}}"#,
                "Condition is not supported",
            ),
        ] {
            let e = Policy::parse(doc).unwrap_err().to_string();
            assert!(e.contains(why), "{doc}: {e}");
        }
    }

    /// Every public route × the four managed policies.
    #[test]
    fn managed_policies_over_every_route() {
        let routes = [
            ("POST", "/workspaces", "aps:CreateWorkspace"),
            ("GET", "/workspaces", "aps:ListWorkspaces"),
            ("GET", "/workspaces/ws-1", "aps:DescribeWorkspace"),
            ("DELETE", "/workspaces/ws-1", "aps:DeleteWorkspace"),
            ("POST", "/workspaces/ws-1/alias", "aps:UpdateWorkspaceAlias"),
            (
                "GET",
                "/workspaces/ws-1/configuration",
                "aps:DescribeWorkspaceConfiguration",
            ),
            (
                "PATCH",
                "/workspaces/ws-1/configuration",
                "aps:UpdateWorkspaceConfiguration",
            ),
            (
                "GET",
                "/tags/arn%3Aaws%3Aaps%3Aus-east-1%3A1%3Aworkspace%2Fws-1",
                "aps:ListTagsForResource",
            ),
            ("POST", "/tags/x", "aps:TagResource"),
            ("DELETE", "/tags/x", "aps:UntagResource"),
            (
                "POST",
                "/workspaces/ws-1/api/v1/remote_write",
                "aps:RemoteWrite",
            ),
            ("GET", "/workspaces/ws-1/api/v1/query", "aps:QueryMetrics"),
            (
                "POST",
                "/workspaces/ws-1/api/v1/query_range",
                "aps:QueryMetrics",
            ),
            (
                "GET",
                "/workspaces/ws-1/api/v1/query_exemplars",
                "aps:QueryMetrics",
            ),
            ("POST", "/workspaces/ws-1/api/v1/read", "aps:QueryMetrics"),
            (
                "GET",
                "/workspaces/ws-1/api/v1/status/buildinfo",
                "aps:QueryMetrics",
            ),
            ("GET", "/workspaces/ws-1/api/v1/series", "aps:GetSeries"),
            ("GET", "/workspaces/ws-1/api/v1/labels", "aps:GetLabels"),
            (
                "GET",
                "/workspaces/ws-1/api/v1/label/job/values",
                "aps:GetLabels",
            ),
            (
                "GET",
                "/workspaces/ws-1/api/v1/metadata",
                "aps:GetMetricMetadata",
            ),
        ];
        let allowed = |policy: &str, action: &str| match policy {
            "AmazonPrometheusFullAccess" => true,
            "AmazonPrometheusConsoleFullAccess" => matches!(
                action,
                "aps:CreateWorkspace"
                    | "aps:DescribeWorkspace"
                    | "aps:UpdateWorkspaceAlias"
                    | "aps:DeleteWorkspace"
                    | "aps:ListWorkspaces"
            ),
            "AmazonPrometheusQueryAccess" => matches!(
                action,
                "aps:GetLabels" | "aps:GetMetricMetadata" | "aps:GetSeries" | "aps:QueryMetrics"
            ),
            "AmazonPrometheusRemoteWriteAccess" => action == "aps:RemoteWrite",
            _ => false,
        };
        for name in MANAGED {
            let p = [managed(name).unwrap()];
            for (method, path, want_action) in routes {
                let r = route_action(method, path).unwrap_or_else(|| panic!("{method} {path}"));
                assert_eq!(r.action, want_action, "{method} {path}");
                let resource = r.resource("us-east-1", "123456789012");
                let got = evaluate(&p, r.action, &resource) == Decision::Allow;
                assert_eq!(got, allowed(name, r.action), "{name}: {method} {path}");
            }
        }
        assert_eq!(
            route_action(
                "GET",
                "/tags/arn%3Aaws%3Aaps%3Aus-east-1%3A1%3Aworkspace%2Fws-1"
            )
            .unwrap()
            .resource("r", "a"),
            "arn:aws:aps:us-east-1:1:workspace/ws-1"
        );
        for (method, path) in [
            ("PUT", "/workspaces"),
            ("GET", "/workspaces/ws-1/api/v1/remote_write"),
            ("GET", "/workspaces/ws-1/api/v1/unknown"),
            ("POST", "/admin/audit"),
            ("GET", "/metrics/x"),
            ("GET", "/admin/users/a/b"),
        ] {
            assert!(
                route_action(method, path).is_none(),
                "{method} {path} must be denied"
            );
        }
    }
}
