//! `glint check`: compile files, print every diagnostic, optionally the IR.
//!
//! Exit codes: 0 no errors (warnings are printed), 1 errors found, 2 usage or
//! IO problems (a missing file).

use crate::cli::{CheckArgs, DiagnosticFormat, Emit, Global};
use crate::loader::compile_path;
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, stderr_is_terminal, use_color};
use std::io::Write;

/// Runs `glint check`.
pub fn run(global: &Global, args: CheckArgs) -> i32 {
    let compilation = match compile_path(&args.file, &args.policies) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("glint check: {e}");
            return EXIT_USAGE;
        }
    };
    let diags = &compilation.diagnostics;
    let failed = diags.has_errors();
    let env = compilation.environment.as_ref();
    let format = match args.output {
        Some(crate::cli::OutputFormat::Json) => DiagnosticFormat::Json,
        Some(crate::cli::OutputFormat::Text) => DiagnosticFormat::Human,
        None => args.format,
    };
    match format {
        DiagnosticFormat::Json => {
            let mut doc = diags.render_json();
            doc["ok"] = serde_json::Value::Bool(!failed);
            if let Some(env) = env {
                doc["environment_name"] = serde_json::Value::String(env.name.to_string());
                doc["hash"] = serde_json::Value::String(env.content_hash().to_string());
                if args.emit == Some(Emit::Ir) {
                    doc["environment"] = serde_json::to_value(env).unwrap_or_default();
                }
            }
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            println!("{text}");
        }
        DiagnosticFormat::Human => {
            let color = use_color(global.color, stderr_is_terminal());
            let rendered = diags.render_human(color);
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(rendered.as_bytes());
            if let Some(env) = env {
                let secrets = env.secret_readers().len();
                let runtime = env
                    .variables
                    .values()
                    .filter(|v| matches!(v.value, glint_model::VariableValue::Runtime(_)))
                    .count();
                let literal = env
                    .variables
                    .values()
                    .filter(|v| matches!(v.value, glint_model::VariableValue::Literal(_)))
                    .count();
                let summary = format!(
                    "ok: environment `{}`: {} image{}, {} service{}, {} endpoint{}, {} volume{}, {} rule{}, {} variable{} ({} literal, {} runtime, {} secret{}), {} notify sink{}, {} polic{} (hash {})",
                    env.name,
                    env.images.len(),
                    plural(env.images.len()),
                    env.services.len(),
                    plural(env.services.len()),
                    env.endpoints.len(),
                    plural(env.endpoints.len()),
                    env.volumes.len(),
                    plural(env.volumes.len()),
                    env.rules.len(),
                    plural(env.rules.len()),
                    env.variables.len(),
                    plural(env.variables.len()),
                    literal,
                    runtime,
                    secrets,
                    plural(secrets),
                    env.notify.len(),
                    plural(env.notify.len()),
                    env.policies.len(),
                    if env.policies.len() == 1 { "y" } else { "ies" },
                    env.content_hash().short(),
                );
                if args.emit == Some(Emit::Ir) {
                    let _ = writeln!(err, "{summary}");
                    println!("{}", env.to_json_pretty());
                } else {
                    println!("{summary}");
                }
            }
        }
    }
    if failed { EXIT_FAILED } else { EXIT_OK }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
