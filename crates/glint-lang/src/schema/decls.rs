//! The tables of the smaller declarations: `environment`, `endpoint`,
//! `rule`, `variable`, `volume`, `notify` and `policy`.

use super::view::{int, lst, opt, reference, refs, s, sym};
use super::{
    BlockDef, BlockInfo, BlockKind, Cx, FieldDef, FieldDefault as D, FieldInfo, What, provider,
};
use crate::capability::Capability;
use crate::codes::Code;
use crate::decode::{
    boolean, enum_word, invalid, list, port, reference as decode_ref, refs as decode_refs, size,
    string, type_error,
};
use crate::diag::Diagnostic;
use crate::source::Span;
use crate::value::{Kind, Record, Value};
use glint_model::*;

// ---------------------------------------------------------------------------
// environment

pub(crate) const ENVIRONMENT_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Environment,
    path: "environment",
    doc: "the environment's name and defaults (at most one per environment)",
    statements: &[],
    capability: None,
};

#[derive(Default)]
pub(crate) struct EnvDraft {
    pub provider: Option<ProviderKind>,
}

pub(crate) static ENVIRONMENT: BlockDef<EnvDraft, ()> = BlockDef {
    finish: None,
    fields: &[FieldDef {
        info: FieldInfo::new(
            "provider",
            "`process`, `docker`, `simulated` or `aws`",
            D::Value("process"),
            "the provider of every service that does not name its own",
            "docker",
        )
        .words(&["process", "docker", "simulated", "aws"])
        .hidden(),
        decode: Some(|cx, v, d| {
            d.provider = Some(provider(cx, v)?);
            Some(())
        }),
        view: None,
    }],
};

// ---------------------------------------------------------------------------
// endpoint

pub(crate) const ENDPOINT_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Endpoint,
    path: "endpoint",
    doc: "a long-lived entry point that routes to a service's healthy instances",
    statements: &[],
    capability: None,
};

pub(crate) struct EndpointDraft {
    pub listen: Option<std::net::SocketAddr>,
    pub service: Option<Name>,
    pub protocol: EndpointProtocol,
}

impl Default for EndpointDraft {
    fn default() -> Self {
        EndpointDraft {
            listen: None,
            service: None,
            protocol: EndpointProtocol::Http,
        }
    }
}

pub(crate) static ENDPOINT: BlockDef<EndpointDraft, Endpoint> = BlockDef {
    finish: None,
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "listen",
                "`addr`",
                D::Required,
                "the address and port it listens on",
                "127.0.0.1:8080",
            )
            .aliases(&["address", "bind"]),
            decode: Some(|cx, v, d| {
                let addr = match &v.v {
                    Value::Addr(a) => *a,
                    Value::Int(p) => {
                        type_error(
                            cx.ev,
                            v,
                            "an address",
                            Some(format!(
                                "write the address and the port: `0.0.0.0:{p}` or `127.0.0.1:{p}`"
                            )),
                        );
                        return None;
                    }
                    Value::Str(s) => {
                        let help = if s.parse::<std::net::SocketAddr>().is_ok() {
                            format!("remove the quotes: `{s}`")
                        } else {
                            "write an address and port such as `127.0.0.1:8080`; IPv6: `addr(\"[::1]:8080\")`".into()
                        };
                        type_error(cx.ev, v, "an address", Some(help));
                        return None;
                    }
                    _ => {
                        type_error(
                            cx.ev,
                            v,
                            "an address",
                            Some("write an address and port such as `127.0.0.1:8080`".into()),
                        );
                        return None;
                    }
                };
                if addr.port() == 0 {
                    invalid(
                        cx.ev,
                        v,
                        format!("endpoint address `{addr}` has port 0"),
                        "an endpoint listens on a fixed port",
                        Some("port 0 would pick a different port at every start; give a port from 1 to 65535".into()),
                    );
                    return None;
                }
                d.listen = Some(addr);
                Some(())
            }),
            view: Some(|m, _| Value::Addr(m.listen)),
        },
        FieldDef {
            info: FieldInfo::new(
                "service",
                "`service.NAME`",
                D::Required,
                "the service it routes to",
                "service.web",
            )
            .aliases(&["target", "destination"]),
            decode: Some(|cx, v, d| {
                d.service = Some(decode_ref(cx.ev, v, Kind::Service)?);
                Some(())
            }),
            view: Some(|m, _| reference(Kind::Service, &m.service)),
        },
        FieldDef {
            info: FieldInfo::new(
                "protocol",
                "`http` or `tcp`",
                D::Value("http"),
                "HTTP (request-level balancing and retries) or TCP (connection-level)",
                "tcp",
            )
            .words(&["http", "tcp"]),
            decode: Some(|cx, v, d| {
                d.protocol = match enum_word(cx.ev, v, &["http", "tcp"])? {
                    "tcp" => EndpointProtocol::Tcp,
                    _ => EndpointProtocol::Http,
                };
                Some(())
            }),
            view: Some(|m, _| {
                sym(match m.protocol {
                    EndpointProtocol::Http => "http",
                    EndpointProtocol::Tcp => "tcp",
                })
            }),
        },
    ],
};

// ---------------------------------------------------------------------------
// rule

pub(crate) const RULE_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Rule,
    path: "rule",
    doc: "a network permission: who may reach which ports of a service",
    statements: &[],
    capability: Some(Capability::FirewallRules),
};

pub(crate) struct RuleDraft {
    pub from: Option<RuleSource>,
    pub to: Option<Name>,
    pub ports: Vec<u16>,
    pub protocol: Transport,
}

impl Default for RuleDraft {
    fn default() -> Self {
        RuleDraft {
            from: None,
            to: None,
            ports: Vec::new(),
            protocol: Transport::Tcp,
        }
    }
}

pub(crate) static RULE: BlockDef<RuleDraft, Rule> = BlockDef {
    finish: None,
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "from",
                "a `cidr`, `service.NAME` or `endpoint.NAME`",
                D::Required,
                "who may connect: a network, the instances of a service, or an endpoint",
                "10.0.0.0/8",
            )
            .aliases(&["ingress", "source"]),
            decode: Some(|cx, v, d| {
                d.from = Some(match &v.v {
                    Value::Cidr(c) => RuleSource::Cidr(*c),
                    Value::Ip(ip) => {
                        let bits = if ip.is_ipv4() { 32 } else { 128 };
                        type_error(
                            cx.ev,
                            v,
                            "a CIDR block or a service",
                            Some(format!("a single address is the block `{ip}/{bits}`")),
                        );
                        return None;
                    }
                    Value::Ref(Kind::Service, n) => {
                        RuleSource::Service(Name::new(n.to_string()).ok()?)
                    }
                    Value::Ref(Kind::Endpoint, n) => {
                        RuleSource::Endpoint(Name::new(n.to_string()).ok()?)
                    }
                    Value::Str(s) => {
                        let help = if s.parse::<Cidr>().is_ok() {
                            format!("remove the quotes: `{s}`")
                        } else {
                            "write a CIDR block such as `10.0.0.0/8`, or `service.NAME`".into()
                        };
                        type_error(cx.ev, v, "a CIDR block or a service", Some(help));
                        return None;
                    }
                    _ => {
                        type_error(
                            cx.ev,
                            v,
                            "a CIDR block or a service",
                            Some(
                                "write a CIDR block such as `10.0.0.0/8`, or `service.NAME`".into(),
                            ),
                        );
                        return None;
                    }
                });
                Some(())
            }),
            view: Some(|m, _| match &m.from {
                RuleSource::Cidr(c) => Value::Cidr(*c),
                RuleSource::Service(n) => reference(Kind::Service, n),
                RuleSource::Endpoint(n) => reference(Kind::Endpoint, n),
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "to",
                "`service.NAME`",
                D::Required,
                "the service that may be reached",
                "service.db",
            )
            .aliases(&["target", "destination"]),
            decode: Some(|cx, v, d| {
                d.to = Some(decode_ref(cx.ev, v, Kind::Service)?);
                Some(())
            }),
            view: Some(|m, _| reference(Kind::Service, &m.to)),
        },
        FieldDef {
            info: FieldInfo::new(
                "ports",
                "list of ports (or one port)",
                D::Derived("the service's port"),
                "the ports that may be reached (policies see the effective ports)",
                "[5432]",
            )
            .aliases(&["port"]),
            decode: Some(|cx, v, d| {
                let mut out = match &v.v {
                    Value::Int(_) => vec![port(cx.ev, v)?],
                    _ => {
                        let items = list(cx.ev, v, "ports")?;
                        let mut out = Vec::new();
                        let mut ok = true;
                        for i in items {
                            match port(cx.ev, i) {
                                Some(p) => out.push(p),
                                None => ok = false,
                            }
                        }
                        if !ok {
                            return None;
                        }
                        out
                    }
                };
                out.sort_unstable();
                out.dedup();
                d.ports = out;
                Some(())
            }),
            view: Some(|m, env| {
                let ports: Vec<u16> = if m.ports.is_empty() {
                    env.services
                        .get(&m.to)
                        .map(|s| vec![s.port])
                        .unwrap_or_default()
                } else {
                    m.ports.clone()
                };
                lst(ports.into_iter().map(int).collect())
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "protocol",
                "`tcp` or `udp`",
                D::Value("tcp"),
                "the transport protocol",
                "udp",
            )
            .words(&["tcp", "udp"]),
            decode: Some(|cx, v, d| {
                d.protocol = match enum_word(cx.ev, v, &["tcp", "udp"])? {
                    "udp" => Transport::Udp,
                    _ => Transport::Tcp,
                };
                Some(())
            }),
            view: Some(|m, _| {
                sym(match m.protocol {
                    Transport::Tcp => "tcp",
                    Transport::Udp => "udp",
                })
            }),
        },
    ],
};

// ---------------------------------------------------------------------------
// variable

pub(crate) const VARIABLE_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Variable,
    path: "variable",
    doc: "a shared value and who may read or write it",
    statements: &[],
    capability: Some(Capability::Variables),
};

#[derive(Default)]
pub(crate) struct VariableDraft {
    pub value: Option<String>,
    pub secret: Option<String>,
    pub runtime: bool,
    pub readers: Vec<Name>,
    pub writers: Vec<Name>,
}

/// What a variable's value is, as policies see it.
const SOURCES: &[&str] = &["literal", "secret", "runtime"];

pub(crate) static VARIABLE: BlockDef<VariableDraft, Variable> = BlockDef {
    finish: Some(finish_variable),
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "value",
                "string",
                D::Absent,
                "the value, declared in the source (with `runtime = true`: the initial value)",
                "\"new-checkout=on\"",
            ),
            decode: Some(|cx, v, d| {
                d.value = Some(string(cx.ev, v)?);
                Some(())
            }),
            view: Some(|m, _| match &m.value {
                VariableValue::Literal(v) => s(v),
                VariableValue::Secret(_) => Value::None,
                VariableValue::Runtime(v) => opt(v.as_deref().map(s)),
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "secret",
                "string, a secret name (`db/password`, optionally `glint:db/password`)",
                D::Absent,
                "the name of a Glint secret (set with `glint secret set NAME`), never its value; readers get it as the file `/run/secrets/NAME`",
                "\"shop/db/password\"",
            ),
            decode: Some(|cx, v, d| {
                let s = string(cx.ev, v)?;
                match secret_reference(&s) {
                    Ok(name) => {
                        d.secret = Some(name);
                        Some(())
                    }
                    Err((msg, label, help)) => {
                        cx.ev.diags.push(
                            Diagnostic::error(Code::SecretReference, v.span, msg)
                                .with_primary(label)
                                .with_help(help),
                        );
                        None
                    }
                }
            }),
            view: Some(|m, _| Value::Bool(matches!(m.value, VariableValue::Secret(_)))),
        },
        FieldDef {
            info: FieldInfo::new(
                "runtime",
                "bool",
                D::Value("false"),
                "written at run time by its `writers`",
                "true",
            )
            .hidden(),
            decode: Some(|cx, v, d| {
                d.runtime = boolean(cx.ev, v)?;
                Some(())
            }),
            view: None,
        },
        FieldDef {
            info: FieldInfo::new(
                "readers",
                "list of `service.NAME`",
                D::Value("[]"),
                "the services that may read it",
                "[service.worker]",
            ),
            decode: Some(|cx, v, d| {
                d.readers = decode_refs(cx.ev, v, Kind::Service)?;
                Some(())
            }),
            view: Some(|m, _| refs(Kind::Service, &m.readers)),
        },
        FieldDef {
            info: FieldInfo::new(
                "writers",
                "list of `service.NAME` (needs `runtime = true`)",
                D::Value("[]"),
                "the services that may write it at run time",
                "[service.worker]",
            ),
            decode: Some(|cx, v, d| {
                d.writers = decode_refs(cx.ev, v, Kind::Service)?;
                Some(())
            }),
            view: Some(|m, _| refs(Kind::Service, &m.writers)),
        },
        FieldDef {
            info: FieldInfo::new(
                "source",
                "`literal`, `secret` or `runtime`",
                D::Derived("from `value`, `secret` and `runtime`"),
                "where the value comes from",
                "secret",
            )
            .words(SOURCES)
            .view_only(),
            decode: None,
            view: Some(|m, _| {
                sym(match &m.value {
                    VariableValue::Literal(_) => "literal",
                    VariableValue::Secret(_) => "secret",
                    VariableValue::Runtime(_) => "runtime",
                })
            }),
        },
    ],
};

fn finish_variable(
    cx: &mut Cx<'_, '_>,
    _rec: &Record,
    at: Span,
    what: &What<'_>,
    d: &mut VariableDraft,
) -> Option<()> {
    match (d.value.is_some(), d.secret.is_some(), d.runtime) {
        (_, false, true) | (true, false, false) | (false, true, false) => {}
        (false, false, false) => {
            crate::decode::missing(
                cx.ev,
                at,
                what,
                "value",
                "`value = \"...\"`, `secret = \"db/password\"` or `runtime = true`",
            );
            return None;
        }
        _ => {
            cx.ev.diags.push(
                Diagnostic::error(Code::InvalidValue, at, format!("{what} mixes `value`, `secret` and `runtime`"))
                    .with_primary("conflicting sources")
                    .with_help("a variable is either a `value`, a `secret` reference, or `runtime = true` (optionally with an initial `value`)"),
            );
            return None;
        }
    }
    if !d.writers.is_empty() && !d.runtime {
        cx.ev.diags.push(
            Diagnostic::error(
                Code::WriterOfDeclaredValue,
                at,
                format!("{what} has writers but is not written at run time"),
            )
            .with_primary("`writers` needs `runtime = true`")
            .with_help(
                "add `runtime = true` (the `value` becomes its initial value), or remove `writers`: a declared value changes only with a new version",
            ),
        );
        return None;
    }
    Some(())
}

/// The secret name a `secret = "..."` reference names (an optional
/// `glint:` prefix removed), or why it names none: (message, label, help).
/// A message never repeats the text when it looks like a pasted value.
fn secret_reference(s: &str) -> Result<String, (String, &'static str, String)> {
    let name = s.strip_prefix("glint:").unwrap_or(s);
    let set = |n: &str| {
        format!(
            "set the value with `glint secret set {n}` (it reads standard input) and write `secret = \"{n}\"`"
        )
    };
    let pasted = || {
        (
            "this looks like a secret's value, not the name of a secret".to_owned(),
            "a value pasted here is stored in clear in every version",
            "never write a value into a .glint file: store it with `glint secret set NAME` (it reads standard input), write `secret = \"NAME\"`, and change the credential if this file was shared".to_owned(),
        )
    };
    if name.chars().any(char::is_whitespace)
        || name.len() > glint_model::secret::MAX_SECRET_NAME
        || glint_model::secret::credential_like_segment(name).is_some()
        || name.starts_with("-----")
    {
        return Err(pasted());
    }
    if let Some((scheme, rest)) = name.split_once(':')
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
    {
        let suggestion = if glint_model::secret::check_secret_name(rest).is_ok() {
            rest.to_owned()
        } else {
            "NAME".to_owned()
        };
        return Err((
            format!(
                "`{scheme}:` secrets are not supported: a secret reference names a Glint secret"
            ),
            "not a Glint secret name",
            format!(
                "Glint keeps secrets itself, sealed in its store: {}",
                set(&suggestion)
            ),
        ));
    }
    match glint_model::secret::check_secret_name(name) {
        Ok(()) => Ok(name.to_owned()),
        Err(e) => Err((
            format!("`{name}` is not a secret name: {e}"),
            "not a secret name",
            format!(
                "a secret name is parts of letters, digits, `.`, `_` and `-` separated by `/`, such as `shop/db/password`; {}",
                set("shop/db/password")
            ),
        )),
    }
}

impl VariableDraft {
    /// The variable (after a successful decode).
    pub fn build(self) -> Option<Variable> {
        let value = match (self.value, self.secret, self.runtime) {
            (v, None, true) => VariableValue::Runtime(v),
            (Some(v), None, false) => VariableValue::Literal(v),
            (None, Some(s), false) => VariableValue::Secret(s),
            _ => return None,
        };
        Some(Variable {
            value,
            readers: self.readers,
            writers: self.writers,
        })
    }
}

// ---------------------------------------------------------------------------
// volume

pub(crate) const VOLUME_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Volume,
    path: "volume",
    doc: "persistent data whose location survives replacements",
    statements: &[],
    capability: Some(Capability::Volumes),
};

pub(crate) static VOLUME: BlockDef<Volume, Volume> = BlockDef {
    finish: None,
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "size",
                "size",
                D::Absent,
                "the expected capacity: usage above it is reported (not a hard quota)",
                "20GiB",
            )
            .aliases(&["capacity"]),
            decode: Some(|cx, v, d| {
                d.size = Some(size(cx.ev, v)?);
                Some(())
            }),
            view: Some(|m, _| opt(m.size.map(|b| Value::Size(b.0)))),
        },
        FieldDef {
            info: FieldInfo::new(
                "per_instance",
                "bool",
                D::Value("false"),
                "each instance gets its own volume `NAME-0`, `NAME-1`, ... by its slot, kept across replacements",
                "true",
            ),
            decode: Some(|cx, v, d| {
                d.per_instance = boolean(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| Value::Bool(m.per_instance)),
        },
    ],
};

// ---------------------------------------------------------------------------
// notify

pub(crate) const NOTIFY_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Notify,
    path: "notify",
    doc: "a webhook that incidents, failed rollouts and automatic rollbacks are sent to",
    statements: &[],
    capability: None,
};

const FORMATS: &[&str] = &["webhook", "slack", "pagerduty"];
const TOPICS: &[&str] = &["incident", "rollout_failed", "rollback"];

/// A `notify` block being decoded.
#[derive(Default)]
pub(crate) struct NotifyDraft {
    pub url: Option<String>,
    pub format: NotifyFormat,
    pub secret: Option<String>,
    pub on: Option<Vec<NotifyTopic>>,
}

impl NotifyDraft {
    /// The sink (after a successful decode).
    pub fn build(self) -> Option<Notify> {
        Some(Notify {
            url: self.url?,
            format: self.format,
            secret: self.secret,
            on: self.on.unwrap_or_else(NotifyTopic::all),
        })
    }
}

pub(crate) static NOTIFY: BlockDef<NotifyDraft, Notify> = BlockDef {
    finish: Some(finish_notify),
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "url",
                "string, an `http://` or `https://` URL",
                D::Required,
                "where messages are posted",
                "\"https://hooks.example.com/glint\"",
            ),
            decode: Some(|cx, v, d| {
                let url = string(cx.ev, v)?;
                if let Err(why) = Notify::check_url(&url) {
                    invalid(
                        cx.ev,
                        v,
                        format!("`notify` needs an http or https URL, and this one is not: {why}"),
                        "not a usable URL",
                        Some("write a URL such as `\"https://hooks.example.com/glint\"` or `\"http://127.0.0.1:9000/hook\"`".into()),
                    );
                    return None;
                }
                d.url = Some(url);
                Some(())
            }),
            view: Some(|m, _| s(&m.url)),
        },
        FieldDef {
            info: FieldInfo::new(
                "format",
                "`webhook`, `slack` or `pagerduty`",
                D::Value("webhook"),
                "the messages' shape: signed JSON per Standard Webhooks, a Slack incoming webhook, or PagerDuty Events v2",
                "pagerduty",
            )
            .words(FORMATS),
            decode: Some(|cx, v, d| {
                d.format = match enum_word(cx.ev, v, FORMATS)? {
                    "slack" => NotifyFormat::Slack,
                    "pagerduty" => NotifyFormat::Pagerduty,
                    _ => NotifyFormat::Webhook,
                };
                Some(())
            }),
            view: Some(|m, _| sym(m.format.as_str())),
        },
        FieldDef {
            info: FieldInfo::new(
                "secret",
                "string, a secret name (`ops/webhook-key`, optionally `glint:ops/webhook-key`)",
                D::Absent,
                "the Glint secret holding the signing key (`webhook`) or the routing key (`pagerduty`), never its value",
                "\"ops/webhook-key\"",
            ),
            decode: Some(|cx, v, d| {
                let text = string(cx.ev, v)?;
                match secret_reference(&text) {
                    Ok(name) => {
                        d.secret = Some(name);
                        Some(())
                    }
                    Err((msg, label, help)) => {
                        cx.ev.diags.push(
                            Diagnostic::error(Code::SecretReference, v.span, msg)
                                .with_primary(label)
                                .with_help(help),
                        );
                        None
                    }
                }
            }),
            view: Some(|m, _| Value::Bool(m.secret.is_some())),
        },
        FieldDef {
            info: FieldInfo::new(
                "on",
                "list of `incident`, `rollout_failed`, `rollback`",
                D::Value("[incident, rollout_failed, rollback]"),
                "what is sent: incidents, failed rollouts, automatic rollbacks",
                "[incident, rollback]",
            )
            .words(TOPICS),
            decode: Some(|cx, v, d| {
                let items = list(cx.ev, v, "`incident`, `rollout_failed` or `rollback`")?;
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match enum_word(cx.ev, item, TOPICS) {
                        Some("incident") => out.push(NotifyTopic::Incident),
                        Some("rollout_failed") => out.push(NotifyTopic::RolloutFailed),
                        Some(_) => out.push(NotifyTopic::Rollback),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                if out.is_empty() {
                    invalid(
                        cx.ev,
                        v,
                        "`on` is empty: this sink would never be sent anything".into(),
                        "nothing to send",
                        Some("list what to send, such as `on = [incident, rollback]`, or remove `on` to send everything".into()),
                    );
                    return None;
                }
                out.sort_unstable();
                out.dedup();
                d.on = Some(out);
                Some(())
            }),
            view: Some(|m, _| lst(m.on.iter().map(|t| sym(t.as_str())).collect())),
        },
    ],
};

fn finish_notify(
    cx: &mut Cx<'_, '_>,
    _rec: &Record,
    at: Span,
    what: &What<'_>,
    d: &mut NotifyDraft,
) -> Option<()> {
    if d.format == NotifyFormat::Pagerduty && d.secret.is_none() {
        cx.ev.diags.push(
            Diagnostic::error(
                Code::InvalidValue,
                at,
                format!("{what} sends to PagerDuty but names no routing key"),
            )
            .with_primary("`format = pagerduty` needs `secret`")
            .with_help("store the integration's routing key with `glint secret set ops/pagerduty` (it reads standard input) and write `secret = \"ops/pagerduty\"`"),
        );
        return None;
    }
    Some(())
}

// ---------------------------------------------------------------------------
// policy

pub(crate) const POLICY_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Policy,
    path: "policy",
    doc: "a check over the compiled declarations, with a severity and a message",
    statements: &[],
    capability: None,
};

pub(crate) struct PolicyDraft {
    pub severity: Severity,
}

impl Default for PolicyDraft {
    fn default() -> Self {
        PolicyDraft {
            severity: Severity::Error,
        }
    }
}

pub(crate) static POLICY: BlockDef<PolicyDraft, Policy> = BlockDef {
    finish: None,
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "severity",
                "`error` or `warning`",
                D::Value("error"),
                "whether a violation blocks the change (`error`) or is only shown",
                "warning",
            )
            .words(&["error", "warning"]),
            decode: Some(|cx, v, d| {
                d.severity = match enum_word(cx.ev, v, &["error", "warning"])? {
                    "warning" => Severity::Warning,
                    _ => Severity::Error,
                };
                Some(())
            }),
            view: Some(|m, _| {
                sym(match m.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                })
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "check",
                "a condition (bool)",
                D::Required,
                "the condition every compiled environment must satisfy, such as `all s in services: s.health != none`",
                "all s in services: s.instances >= 2",
            )
            .lazy()
            .hidden(),
            decode: Some(|_, _, _| Some(())),
            view: None,
        },
        FieldDef {
            info: FieldInfo::new(
                "message",
                "string (may use the quantifier's variable)",
                D::Required,
                "the text shown on a violation",
                "\"service `${s.name}` has one instance\"",
            )
            .lazy(),
            decode: Some(|_, _, _| Some(())),
            view: Some(|m, _| s(&m.message)),
        },
        FieldDef {
            info: FieldInfo::new(
                "help",
                "string (may use the quantifier's variable)",
                D::Absent,
                "how to fix a violation",
                "\"set `instances = 2` or more\"",
            )
            .lazy()
            .hidden(),
            decode: Some(|_, _, _| Some(())),
            view: None,
        },
    ],
};

/// The lazy fields of a policy: kept as expressions by the evaluator.
pub(crate) fn policy_lazy_fields() -> Vec<&'static str> {
    POLICY
        .fields
        .iter()
        .filter(|f| f.info.lazy)
        .map(|f| f.info.name)
        .collect()
}
