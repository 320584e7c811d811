//! `glint token create|list|revoke`: API tokens.
//!
//! A token is an accessor (public: listings and audit events name it) and
//! a secret, printed once by `create` and stored only as a hash. Locally
//! the store is used directly (whoever can write the data directory is its
//! admin); with `--addr` the conductor's `/v1/tokens` routes are called,
//! which need an admin token.

use crate::cli::{Global, OutputFormat, TokenArgs, TokenCommand};
use crate::common::{CmdResult, Paint, Table, age_of, fail, fail_io, open_store, print_json};
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use glint_conductor::events::ConductorEvent;
use glint_conductor::http::auth;
use glint_store::TokenRecord;
use glint_store::prelude::*;

/// Runs `glint token`.
pub fn run(global: &Global, args: TokenArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn record_event(store: &dyn Store, e: ConductorEvent) {
    if let Err(err) = store.append_event(e.to_event()) {
        eprintln!("glint: warning: the token changed, but its event was not recorded: {err}");
    }
}

fn body(global: &Global, args: TokenArgs) -> CmdResult {
    match args.command {
        TokenCommand::Create {
            name,
            role,
            environment,
            ttl,
            output,
        } => {
            let ttl_ms = match ttl.as_deref().map(humantime::parse_duration) {
                None => None,
                Some(Ok(d)) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                Some(Err(e)) => {
                    return Err(fail(
                        EXIT_USAGE,
                        format_args!(
                            "--ttl {}: {e} (write it like `30d` or `12h`)",
                            ttl.unwrap_or_default()
                        ),
                    ));
                }
            };
            let (token, record) = if let Some(client) = crate::remote::client(global) {
                let client = client?;
                let v: serde_json::Value = crate::remote::post(
                    &client,
                    "/v1/tokens",
                    &glint_conductor::http::routes::CreateToken {
                        name,
                        role: role.role(),
                        environment,
                        ttl_s: ttl_ms.map(|ms| u64::try_from(ms / 1000).unwrap_or(0)),
                    },
                )?;
                let token = v["token"].as_str().unwrap_or_default().to_owned();
                let record: TokenRecord = serde_json::from_value(v["record"].clone())
                    .map_err(|e| fail(EXIT_FAILED, format_args!("unexpected answer: {e}")))?;
                (token, record)
            } else {
                let store = open_store(global)?;
                let expires = ttl_ms.map(|ms| glint_store::now_ms().saturating_add(ms));
                let issued = auth::issue(&store, &name, role.role(), environment, expires)
                    .map_err(|e| match e {
                        auth::IssueError::BadName(_) | auth::IssueError::NameTaken(_) => {
                            fail(EXIT_FAILED, e)
                        }
                        other => fail_io("cannot create the token", &other),
                    })?;
                record_event(
                    &store,
                    ConductorEvent::TokenCreated {
                        accessor: issued.record.accessor.clone(),
                        name: issued.record.name.clone(),
                        role: issued.record.role,
                        by: "cli".into(),
                    },
                );
                (issued.token, issued.record)
            };
            if output.output == OutputFormat::Json {
                print_json(&serde_json::json!({ "token": token, "record": record }));
            } else {
                println!("{token}");
                eprintln!(
                    "Created token {} (accessor {}, role {}). The line above is its secret: it is shown only now.",
                    record.name, record.accessor, record.role
                );
            }
            Ok(EXIT_OK)
        }
        TokenCommand::List { all, output } => {
            let tokens: Vec<TokenRecord> = if let Some(client) = crate::remote::client(global) {
                let v: serde_json::Value = crate::remote::get(&client?, "/v1/tokens")?;
                serde_json::from_value(v["tokens"].clone())
                    .map_err(|e| fail(EXIT_FAILED, format_args!("unexpected answer: {e}")))?
            } else {
                match crate::common::open_store_to_read(global)? {
                    Some(s) => s.tokens().map_err(|e| fail_io("cannot read tokens", &e))?,
                    None => Vec::new(),
                }
            };
            let now = glint_store::now_ms();
            let live =
                |t: &TokenRecord| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now);
            let shown: Vec<&TokenRecord> = tokens.iter().filter(|t| all || live(t)).collect();
            if output.output == OutputFormat::Json {
                print_json(&serde_json::json!({ "tokens": shown }));
                return Ok(EXIT_OK);
            }
            if shown.is_empty() {
                println!("No tokens. Create one with `glint token create NAME --role viewer`.");
                return Ok(EXIT_OK);
            }
            let paint = Paint::stdout(global);
            let mut t = Table::new(
                &[
                    "ACCESSOR",
                    "NAME",
                    "ROLE",
                    "ENVIRONMENT",
                    "CREATED",
                    "EXPIRES",
                    "STATE",
                ],
                paint,
            );
            for tok in shown {
                let state = if tok.revoked_at.is_some() {
                    paint.red("revoked")
                } else if !live(tok) {
                    paint.yellow("expired")
                } else {
                    paint.green("valid")
                };
                t.row(vec![
                    tok.accessor.clone(),
                    tok.name.clone(),
                    tok.role.to_string(),
                    tok.environment.clone().unwrap_or_else(|| "any".into()),
                    format!("{} ago", age_of(tok.created_at)),
                    tok.expires_at
                        .map(crate::common::time_of)
                        .unwrap_or_else(|| "never".into()),
                    state,
                ]);
            }
            print!("{}", t.render());
            Ok(EXIT_OK)
        }
        TokenCommand::Revoke { token, output } => {
            let rec: TokenRecord = if let Some(client) = crate::remote::client(global) {
                let client = client?;
                let path = format!(
                    "/v1/tokens/{}",
                    glint_conductor::http::client::encode(&token)
                );
                crate::remote::run(client.call(hyper::Method::DELETE, &path, None::<&()>))?
            } else {
                let store = open_store(global)?;
                let Some(rec) = store
                    .revoke_token(&token)
                    .map_err(|e| fail_io("cannot revoke the token", &e))?
                else {
                    return Err(fail(
                        EXIT_FAILED,
                        format_args!(
                            "no live token has the accessor or name `{token}` (see `glint token list`)"
                        ),
                    ));
                };
                record_event(
                    &store,
                    ConductorEvent::TokenRevoked {
                        accessor: rec.accessor.clone(),
                        name: rec.name.clone(),
                        by: "cli".into(),
                    },
                );
                rec
            };
            if output.output == OutputFormat::Json {
                print_json(&rec);
            } else {
                println!("Revoked token {} ({}).", rec.name, rec.accessor);
            }
            Ok(EXIT_OK)
        }
    }
}
