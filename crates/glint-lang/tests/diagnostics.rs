//! One snapshot per diagnostic code: the source and the fully rendered
//! message (no colour), as a user sees it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_lang::{Capabilities, Code, CompileOptions, MemoryLoader, ProviderSet, compile};
use glint_model::ProviderKind;
use std::collections::BTreeSet;

const APP: &str =
    "image app {\n  copy \"bin/app\" to \"/bin/app\"\n  entrypoint = [\"/bin/app\"]\n}\n";

/// The options of the snapshots: the `glint` binary's providers, and every
/// capability enforced so that each snapshot shows its own code only (the
/// `E06xx` cases enforce none, except E0605, which is about rules where
/// they are enforced).
fn options_for(code: Code) -> CompileOptions {
    let not_enforced = code.as_str().starts_with("E06") && code != Code::DockerRulesNotEnforced;
    CompileOptions {
        enforced: if not_enforced {
            Capabilities::none()
        } else {
            Capabilities::all()
        },
        providers: ProviderSet::of([ProviderKind::Process, ProviderKind::Docker]),
        ..CompileOptions::default()
    }
}

/// Compiles `files` (the first is the main file), renders the diagnostics and
/// checks that `code` is among them.
fn render(code: Code, files: &[(&str, &[u8])], policies: &[&str]) -> String {
    let mut loader = MemoryLoader::new();
    for (k, v) in files {
        loader.add(*k, v.to_vec());
    }
    let options = CompileOptions {
        policies: policies.iter().map(|p| p.to_string()).collect(),
        ..options_for(code)
    };
    let c = compile(files[0].0, &loader, &options);
    let rendered = c.diagnostics.render_human(false);
    assert!(
        c.diagnostics.list.iter().any(|d| d.code == code),
        "expected {code} in:\n{rendered}"
    );
    let mut out = String::new();
    for (k, v) in files {
        let text = String::from_utf8_lossy(v);
        let shown: String = if text.len() > 400 {
            format!("{}... ({} bytes)", &text[..80], text.len())
        } else {
            text.into_owned()
        };
        out.push_str(&format!("--- {k}\n{shown}\n"));
    }
    out.push_str("--- diagnostics\n");
    out.push_str(&rendered);
    out
}

fn case(code: Code, files: &[(&str, &[u8])]) {
    let out = render(code, files, &[]);
    insta::assert_snapshot!(code.as_str(), out);
}

fn main_only(code: Code, src: &str) {
    case(code, &[("main.glint", src.as_bytes())]);
}

#[test]
fn e0001_invalid_utf8() {
    case(
        Code::InvalidUtf8,
        &[("main.glint", b"service web {\n  image = \"caf\xe9\"\n}\n")],
    );
}

#[test]
fn e0002_unexpected_char() {
    main_only(
        Code::UnexpectedChar,
        &format!("{APP}\nservice web {{\n  image     = image.app\n  instances = 3;\n}}\n"),
    );
}

#[test]
fn e0003_unterminated_string() {
    main_only(Code::UnterminatedString, "let greeting = \"hello\n");
}

#[test]
fn e0004_invalid_escape() {
    main_only(Code::InvalidEscape, "let path = \"C:\\data\"\n");
}

#[test]
fn e0005_invalid_number() {
    main_only(Code::InvalidNumber, "let grace = 1.5h\n");
}

#[test]
fn e0006_unknown_unit() {
    main_only(Code::UnknownUnit, "volume data {\n  size = 512MB\n}\n");
}

#[test]
fn e0007_invalid_address() {
    main_only(
        Code::InvalidAddress,
        &format!(
            "{APP}\nservice db {{\n  image = image.app\n}}\n\nrule office {{\n  from  = 10.0.0.300/8\n  to    = service.db\n  ports = [5432]\n}}\n"
        ),
    );
}

#[test]
fn e0008_invalid_digest() {
    main_only(
        Code::InvalidDigest,
        "image app {\n  digest = sha256:abc123\n}\n",
    );
}

#[test]
fn e0009_space_before_unit() {
    main_only(
        Code::SpaceBeforeUnit,
        &format!("{APP}\nservice web {{\n  image      = image.app\n  stop_grace = 30 s\n}}\n"),
    );
}

#[test]
fn e0010_too_deep() {
    let src = format!("let x = {}1{}\n", "(".repeat(300), ")".repeat(300));
    main_only(Code::TooDeep, &src);
}

#[test]
fn e0011_too_large() {
    let src = format!("let blob = \"{}\"\n", "x".repeat((1 << 20) + 10));
    main_only(Code::TooLarge, &src);
}

#[test]
fn e0100_syntax() {
    main_only(
        Code::Syntax,
        &format!("{APP}\nservice web {{\n  image     = image.app\n  instances = = 3\n}}\n"),
    );
}

#[test]
fn e0101_unknown_field() {
    main_only(
        Code::UnknownField,
        &format!("{APP}\nservice web {{\n  image     = image.app\n  instnaces = 3\n}}\n"),
    );
}

#[test]
fn e0102_missing_field() {
    main_only(
        Code::MissingField,
        &format!(
            "{APP}\nservice web {{\n  image = image.app\n}}\n\nendpoint public {{\n  listen = 127.0.0.1:8080\n}}\n"
        ),
    );
}

#[test]
fn e0103_type_mismatch() {
    main_only(
        Code::TypeMismatch,
        &format!("{APP}\nservice web {{\n  image   = image.app\n  max_age = \"1 hour\"\n}}\n"),
    );
}

#[test]
fn e0104_duplicate_field() {
    main_only(
        Code::DuplicateField,
        &format!(
            "{APP}\nservice web {{\n  image     = image.app\n  instances = 2\n  instances = 3\n}}\n"
        ),
    );
}

#[test]
fn e0105_invalid_value() {
    main_only(
        Code::InvalidValue,
        &format!(
            "{APP}\nservice db {{\n  image = image.app\n}}\n\nrule api_to_db {{\n  from  = 10.0.0.0/8\n  to    = service.db\n  ports = [5432, 70000]\n}}\n"
        ),
    );
}

#[test]
fn e0106_unknown_variant() {
    main_only(
        Code::UnknownVariant,
        &format!("{APP}\nservice web {{\n  image   = image.app\n  on_exec = restart\n}}\n"),
    );
}

#[test]
fn e0107_invalid_name() {
    main_only(
        Code::InvalidName,
        &format!("{APP}\nservice Web {{\n  image = image.app\n}}\n"),
    );
}

#[test]
fn e0200_unknown_name() {
    main_only(
        Code::UnknownName,
        &format!(
            "{APP}\nlet replicas = 3\n\nservice web {{\n  image     = image.app\n  instances = replica\n}}\n"
        ),
    );
}

#[test]
fn e0201_unknown_reference() {
    main_only(
        Code::UnknownReference,
        &format!(
            "{APP}\nservice web {{\n  image = image.app\n}}\n\nendpoint public {{\n  listen  = 127.0.0.1:8080\n  service = service.wbe\n}}\n"
        ),
    );
}

#[test]
fn e0202_duplicate_declaration() {
    case(
        Code::DuplicateDeclaration,
        &[
            (
                "main.glint",
                format!(
                    "import \"more.glint\"\n\n{APP}\nservice web {{\n  image = image.app\n}}\n"
                )
                .as_bytes(),
            ),
            ("more.glint", b"service web {\n  image = image.app\n}\n"),
        ],
    );
}

#[test]
fn e0203_reference_cycle() {
    main_only(
        Code::ReferenceCycle,
        "image base {\n  from = image.app\n}\n\nimage app {\n  from = image.base\n}\n",
    );
}

#[test]
fn e0204_binding_cycle() {
    main_only(
        Code::BindingCycle,
        "let a = b + 1\nlet b = a * 2\n\nvolume data {\n  size = a * 1GiB\n}\n",
    );
}

#[test]
fn e0205_recursive_function() {
    main_only(
        Code::RecursiveFunction,
        "fn replicas(n: int): int = if n > 3 then n else replicas(n + 1)\n\nlet r = replicas(1)\n",
    );
}

#[test]
fn e0206_bad_arguments() {
    main_only(
        Code::BadArguments,
        &format!(
            "{APP}\nfn backend(port: port, max_age: duration = 24h) = {{\n  image   = image.app\n  port    = port\n  max_age = max_age\n}}\n\nservice web {{\n  ...backend(prot = 8080)\n}}\n"
        ),
    );
}

#[test]
fn e0207_operator_type() {
    main_only(
        Code::OperatorType,
        &format!("{APP}\nservice web {{\n  image      = image.app\n  stop_grace = 30s + 5\n}}\n"),
    );
}

#[test]
fn e0208_arithmetic() {
    main_only(
        Code::Arithmetic,
        "let per_instance = 10\nlet instances = 0\nlet share = per_instance / instances\n\nvolume data {\n  size = share * 1GiB\n}\n",
    );
}

#[test]
fn e0209_value_too_large() {
    main_only(
        Code::ValueTooLarge,
        "let many = range(5000000)\n\nvolume data {\n  size = len(many) * 1B\n}\n",
    );
}

#[test]
fn e0210_unknown_kind() {
    main_only(
        Code::UnknownKind,
        &format!("{APP}\nservce web {{\n  image = image.app\n}}\n"),
    );
}

#[test]
fn e0211_no_such_member() {
    main_only(
        Code::NoSuchMember,
        "let base = { port = 8080 }\n\nvolume data {\n  size = base.size\n}\n",
    );
}

#[test]
fn e0300_import_not_found() {
    main_only(Code::ImportNotFound, "import \"lib/backends.glint\"\n");
}

#[test]
fn e0301_import_cycle() {
    case(
        Code::ImportCycle,
        &[
            ("main.glint", b"import \"lib/a.glint\"\n"),
            ("lib/a.glint", b"import \"b.glint\"\n\nlet x = 1\n"),
            ("lib/b.glint", b"import \"a.glint\"\n\nlet y = 2\n"),
        ],
    );
}

#[test]
fn e0302_unknown_module_member() {
    case(
        Code::UnknownModuleMember,
        &[
            ("main.glint", format!("import \"lib/templates.glint\" as tpl\n\n{APP}\nservice web {{\n  ...tpl.backnd(image.app)\n}}\n").as_bytes()),
            ("lib/templates.glint", b"fn backend(image: image) = { image = image }\n"),
        ],
    );
}

#[test]
fn e0400_policy_violation() {
    main_only(
        Code::PolicyViolation,
        &format!(
            "import \"std:policies\"\n\n{APP}\nservice api {{\n  image   = image.app\n  max_age = 24h\n  health {{\n    tcp = true\n  }}\n}}\n\nrule ssh {{\n  from  = 0.0.0.0/0\n  to    = service.api\n  ports = [22]\n}}\n"
        ),
    );
}

#[test]
fn e0401_policy_evaluation() {
    main_only(
        Code::PolicyEvaluation,
        &format!(
            "{APP}\nservice api {{\n  image = image.app\n}}\n\npolicy short_lived {{\n  message = \"instances must be replaced daily\"\n  check   = all s in services: s.max_age <= 24h\n}}\n"
        ),
    );
}

#[test]
fn e0500_duplicate_environment() {
    main_only(
        Code::DuplicateEnvironment,
        "environment shop {\n  provider = docker\n}\n\nenvironment staging {}\n",
    );
}

#[test]
fn e0501_listen_conflict() {
    main_only(
        Code::ListenConflict,
        &format!(
            "{APP}\nservice web {{\n  image = image.app\n}}\n\nendpoint public {{\n  listen  = 127.0.0.1:8080\n  service = service.web\n}}\n\nendpoint admin {{\n  listen  = 127.0.0.1:8080\n  service = service.web\n}}\n"
        ),
    );
}

#[test]
fn e0108_outside_context() {
    main_only(
        Code::OutsideContext,
        "image app {\n  copy \"../../../../etc/hostname\" to \"/etc/hostname\"\n  entrypoint = [\"/bin/app\"]\n}\n",
    );
}

#[test]
fn e0109_provider_unavailable() {
    main_only(
        Code::ProviderUnavailable,
        &format!("{APP}\nservice web {{\n  image    = image.app\n  provider = simulated\n}}\n"),
    );
}

#[test]
fn e0303_import_outside_root() {
    case(
        Code::ImportOutsideRoot,
        &[
            (
                "main.glint",
                b"import \"/proc/self/environ\"\nimport \"../../etc/passwd.glint\"\n",
            ),
            ("/proc/self/environ", b"SECRET=hunter2\n"),
        ],
    );
}

#[test]
fn e0304_import_not_glint() {
    case(
        Code::ImportNotGlint,
        &[
            ("main.glint", b"import \"secrets.env\"\n"),
            ("secrets.env", b"TOKEN=hunter2\n"),
        ],
    );
}

#[test]
fn e0402_not_a_policy() {
    let out = render(
        Code::NotAPolicy,
        &[
            ("main.glint", APP.as_bytes()),
            (
                "org.glint",
                b"policy small {\n  message = \"too big\"\n  check   = len(services) < 10\n}\n\nendpoint backdoor {\n  listen  = 0.0.0.0:2222\n  service = service.web\n}\n",
            ),
        ],
        &["org.glint"],
    );
    insta::assert_snapshot!("E0402", out);
}

#[test]
fn e0600_rules_not_enforced() {
    main_only(
        Code::RulesNotEnforced,
        &format!(
            "{APP}\nservice db {{\n  image = image.app\n}}\n\nrule office_to_db {{\n  from  = 10.20.0.0/16\n  to    = service.db\n  ports = [5432]\n}}\n\nrule vpn_to_db {{\n  from  = 10.30.0.0/16\n  to    = service.db\n}}\n"
        ),
    );
}

#[test]
fn e0601_variables_not_enforced() {
    main_only(
        Code::VariablesNotEnforced,
        &format!(
            "{APP}\nservice api {{\n  image = image.app\n}}\n\nvariable flags {{\n  value   = \"new-checkout=on\"\n  readers = [service.api]\n}}\n\nvariable db_password {{\n  secret  = \"shop/db/password\"\n  readers = [service.api]\n}}\n"
        ),
    );
}

#[test]
fn e0700_secret_reference() {
    main_only(
        Code::SecretReference,
        &format!(
            "{APP}\nservice api {{\n  image = image.app\n}}\n\nvariable db_password {{\n  secret  = \"vault:shop/db/password\"\n  readers = [service.api]\n}}\n"
        ),
    );
}

#[test]
fn e0701_writer_of_declared_value() {
    main_only(
        Code::WriterOfDeclaredValue,
        &format!(
            "{APP}\nservice api {{\n  image = image.app\n}}\n\nservice admin {{\n  image = image.app\n}}\n\nvariable flags {{\n  value   = \"new-checkout=on\"\n  readers = [service.api]\n  writers = [service.admin]\n}}\n"
        ),
    );
}

#[test]
fn e0110_instances_outside_autoscale() {
    main_only(
        Code::InstancesOutsideAutoscale,
        &format!(
            "{APP}\nservice web {{\n  image     = image.app\n  instances = 10\n  autoscale {{ min = 2, max = 6 }}\n}}\n"
        ),
    );
}

#[test]
fn e0502_shared_writable_volume() {
    main_only(
        Code::SharedWritableVolume,
        &format!(
            "{APP}\nvolume data {{\n  size = 1GiB\n}}\n\nservice db {{\n  image     = image.app\n  instances = 3\n  mounts    = [{{ volume = volume.data, path = \"/data\" }}]\n}}\n"
        ),
    );
}

#[test]
fn e0602_volumes_not_enforced() {
    main_only(
        Code::VolumesNotEnforced,
        &format!(
            "{APP}\nvolume pgdata {{\n  size = 20GiB\n}}\n\nservice db {{\n  image  = image.app\n  mounts = [{{ volume = volume.pgdata, path = \"/var/lib/data\" }}]\n}}\n"
        ),
    );
}

#[test]
fn e0603_autoscale_not_enforced() {
    main_only(
        Code::AutoscaleNotEnforced,
        &format!(
            "{APP}\nservice worker {{\n  image = image.app\n  autoscale {{\n    max = 8\n  }}\n}}\n"
        ),
    );
}

#[test]
fn e0604_resources_not_enforced() {
    main_only(
        Code::ResourcesNotEnforced,
        &format!(
            "{APP}\nservice api {{\n  image = image.app\n  resources {{\n    memory = 512MiB\n  }}\n}}\n\nservice db {{\n  image    = image.app\n  provider = docker\n  resources {{\n    memory = 2GiB\n  }}\n}}\n"
        ),
    );
}

#[test]
fn e0605_docker_rules_not_enforced() {
    main_only(
        Code::DockerRulesNotEnforced,
        &format!(
            "{APP}\nservice api {{\n  image = image.app\n}}\n\nservice db {{\n  image    = image.app\n  provider = docker\n}}\n\nrule api_to_db {{\n  from  = service.api\n  to    = service.db\n  ports = [5432]\n}}\n\nrule office {{\n  from = 10.0.0.0/8\n  to   = service.api\n}}\n"
        ),
    );
}

#[test]
fn every_code_has_a_snapshot_test() {
    let src = include_str!("diagnostics.rs");
    let tested: BTreeSet<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| src.contains(&format!("fn {}_", c.to_lowercase())))
        .collect();
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !tested.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a snapshot test: {missing:?}"
    );
    for c in Code::ALL {
        assert!(glint_lang::explain(c.as_str()).is_some());
    }
}

#[test]
fn every_code_is_documented() {
    let doc = include_str!("../../../docs/language.md");
    for c in Code::ALL {
        assert!(
            doc.contains(&format!("| {} | {} |", c.as_str(), c.title())),
            "docs/language.md lacks {} ({})",
            c.as_str(),
            c.title()
        );
    }
}
