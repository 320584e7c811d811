//! Error codes and their long explanations (`glint explain CODE`).
//!
//! Codes are stable: a code is never reused for a different problem. Ranges:
//! `E00xx` lexing, `E01xx` syntax and fields, `E02xx` names, references and
//! evaluation, `E03xx` imports, `E04xx` policies, `E05xx` whole-environment
//! checks, `E06xx` capabilities declared but not enforced by this build
//! (warnings), `E07xx` variables and secrets.

use std::fmt;

macro_rules! codes {
    ($( $variant:ident = $code:literal, $title:literal, $explain:literal; )*) => {
        /// A stable diagnostic code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as written (`E0103`).
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// A short title.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }

            /// The long explanation, with an example.
            pub fn explanation(self) -> &'static str {
                match self { $(Code::$variant => $explain,)* }
            }
        }
    };
}

codes! {
    InvalidUtf8 = "E0001", "source file is not valid UTF-8",
"A .glint file must be UTF-8 text. The byte sequence at the marked position is
not valid UTF-8 (for example a Latin-1 `é` saved by an old editor, or a binary
file passed by mistake).

Fix: re-save the file as UTF-8, or check that the path names the right file.";

    UnexpectedChar = "E0002", "unexpected character",
"The lexer met a character that cannot start any token, such as `@`, `#` or `;`.

    service web {
      instances = 3;   // error: `;` is not used in Glint
    }

Entries are separated by new lines or commas. Comments start with `//` or are
written `/* ... */`.";

    UnterminatedString = "E0003", "unterminated string or comment",
"A string literal (`\"...\"`) or a block comment (`/* ... */`) is not closed
before the end of its line (strings) or file (comments).

    message = \"images must be pinned     // error: missing closing quote

Add the closing `\"` (or `*/`). Strings cannot span lines; use `\\n` for a
line break.";

    InvalidEscape = "E0004", "invalid escape sequence in a string",
"Inside a string, a backslash starts an escape. The valid escapes are
`\\n`, `\\t`, `\\r`, `\\\\`, `\\\"`, `\\$` (a literal dollar, to write `$${`-like
text) and `\\u{XXXX}` (a Unicode scalar value in hex).

    path = \"C:\\data\"    // error: `\\d` is not an escape; write \"C:\\\\data\"";

    InvalidNumber = "E0005", "invalid or too large number",
"Integers are written in decimal, optionally with `_` separators (`1_000`).
They must fit in a signed 64-bit integer; durations must fit in 64-bit
milliseconds and sizes in 64-bit bytes. Fractions are not supported: write
`1500ms` instead of `1.5s` and `1536MiB` instead of `1.5GiB`.";

    UnknownUnit = "E0006", "unknown unit",
"A number is followed directly by letters that are not a known unit.

Durations: `ms`, `s`, `m`, `h`, `d` (for example `250ms`, `30s`, `5m`, `1h`,
`7d`). Sizes are binary: `B`, `KiB`, `MiB`, `GiB`, `TiB` (for example
`512KiB`, `256MiB`, `2GiB`). Decimal units like `MB` are refused because they
are ambiguous; write `MiB`.";

    InvalidAddress = "E0007", "invalid IP address, CIDR block or socket address",
"An IPv4 literal has four parts from 0 to 255 (`10.0.0.1`). A CIDR block adds
a prefix length from 0 to 32 (`10.0.0.0/8`) and must not have host bits set:
`10.0.0.1/8` is refused because the network is `10.0.0.0/8`. A socket address
adds a port from 1 to 65535 (`127.0.0.1:8080`).

IPv6 values are written with the functions `ip(\"::1\")`, `cidr(\"fd00::/8\")`
and `addr(\"[::1]:8080\")`.";

    InvalidDigest = "E0008", "invalid digest",
"A digest literal is `sha256:` followed by exactly 64 lowercase hexadecimal
digits, the form `sha256sum` and OCI tools print:

    digest = sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    SpaceBeforeUnit = "E0009", "space between a number and its unit",
"Durations and sizes are single tokens: the unit follows the number without a
space.

    stop_grace = 30 s    // error
    stop_grace = 30s     // ok";

    TooDeep = "E0010", "nesting too deep",
"Expressions, blocks, lists and interpolations may nest at most 128 levels
deep. Deeper nesting is refused (instead of overflowing the compiler's stack).
Real configurations never come close; flatten the value with `let` bindings.";

    TooLarge = "E0011", "input too large",
"A source file may be at most 64 MiB, and a single string literal at most
1 MiB. Larger inputs are refused so that checking stays fast and bounded.";

    Syntax = "E0100", "syntax error",
"The parser expected one thing and found another. The message lists what was
expected at that point.

    service web {
      instances = = 3     // error: expected an expression, found `=`
    }

Top-level items are `import`, `let`, `fn`, `for` and declarations
(`environment`, `image`, `service`, `endpoint`, `rule`, `variable`, `volume`,
`policy`). Inside a block, entries are `key = value`, `key { ... }`,
`...spread`, and in images the build steps `copy SRC to DST`, `run CMD`
and `test CMD`.";

    UnknownField = "E0101", "unknown field",
"A block has a field its kind does not define, usually a typo.

    service web {
      instnaces = 3    // error: unknown field `instnaces`; did you mean `instances`?
    }

`docs/language.md` lists every field of every declaration kind.";

    MissingField = "E0102", "missing required field",
"A declaration lacks a field that has no default. For example a service needs
an `image`, an endpoint needs `listen` and `service`, a rule needs `from` and
`to`, a policy needs `check` and `message`.";

    TypeMismatch = "E0103", "mismatched types",
"A value has a different type than the field or parameter expects.

    service web {
      max_age = \"1 hour\"   // error: expected duration, found string
    }

Durations, sizes, ports, IP addresses, CIDR blocks and digests are literals of
their own types, not strings: write `max_age = 1h`.";

    DuplicateField = "E0104", "field given twice",
"A field is set twice in the same block. Later values do not silently win;
remove one of them. (A field set by a `...spread` may be overridden by an
explicit entry after it: that is how templates are specialised.)";

    InvalidValue = "E0105", "invalid value",
"The value has the right type but is outside what the field allows: a port
outside 1–65535, zero instances, an autoscaling minimum above its maximum, a
health-check path that does not start with `/`, a relative destination path
inside an image, and so on. The message says which constraint failed.";

    UnknownVariant = "E0106", "unknown enum value",
"A field takes one of a fixed set of values and the one given is not among
them.

    service web {
      on_exec = restart    // error: expected `replace` or `report`
    }

Enum values are bare words: `provider = docker`, `protocol = tcp`,
`rollout = rolling { surge = 2 }`.";

    InvalidName = "E0107", "invalid declaration name",
"Declaration names become labels, file names and DNS labels, so they are 1 to
63 characters of lowercase letters, digits, `_` and `-`, starting with a
letter.

    service Web { }     // error: write `web`";

    OutsideContext = "E0108", "path outside the image's build context",
"An image's `copy` source or `archive(...)` path is outside its build
context: the directory the build may read. By default that is the
environment root (the directory of the main `.glint` file); a path that
climbs out of it with `..`, an absolute path, or a path through a symlink
that leads outside is refused, so that checking or building a change never
reads files it was not meant to (a CI machine's secrets, `/etc`).

    image app {
      copy \"../../etc/hostname\" to \"/etc/hostname\"   // error: outside the root
    }

To read from elsewhere in the repository, declare the context on the image,
relative to the file that declares it, as with a Docker build context:

    image hello {
      context = \"../..\"
      copy \"../../target/release/app\" to \"/bin/app\"
    }";

    ProviderUnavailable = "E0109", "provider not available in this build",
"A service (or the `environment` block) names a provider this build of
`glint` does not have, so its instances could never be launched. The `glint`
binary has `process` and `docker`; `simulated` exists only in Glint's own
tests and benchmarks.

    service web {
      provider = simulated   // error: this build has no `simulated` provider
    }";

    InstancesOutsideAutoscale = "E0110", "instances outside the autoscale bounds",
"With `autoscale`, `instances` is the count the service starts with (and
keeps until the autoscaler has measured the load); it must lie within
`min` and `max`. Left out, it is `min`.

    service web {
      instances = 10                 // error: above max
      autoscale { min = 2, max = 6 }
    }";

    UnknownName = "E0200", "unknown name",
"An identifier does not name a `let` binding, a function, a function
parameter, a `for` variable, an imported module or a built-in.

    let replicas = 3
    service web { instances = replica }   // error: did you mean `replicas`?";

    UnknownReference = "E0201", "reference to an undeclared declaration",
"A reference such as `service.api` or `image.base` names a declaration that
does not exist in the environment (in any of its files).

    endpoint public {
      listen  = 127.0.0.1:8080
      service = service.wbe    // error: no service `wbe`; did you mean `web`?
    }";

    DuplicateDeclaration = "E0202", "declared twice",
"Two declarations of the same kind have the same name, possibly in different
files. Each name may be declared once per kind.";

    ReferenceCycle = "E0203", "reference cycle",
"Declarations refer to each other in a loop that cannot be resolved, for
example two images built `from` each other:

    image a { from = image.b }
    image b { from = image.a }   // error: cycle a -> b -> a";

    BindingCycle = "E0204", "binding depends on itself",
"A `let` binding's value depends, directly or through other bindings, on
itself:

    let a = b + 1
    let b = a * 2     // error: `a` -> `b` -> `a`

Glint evaluates bindings lazily in any order, but the dependencies must form a
tree.";

    RecursiveFunction = "E0205", "recursive function call",
"Glint is total: evaluation always terminates. Functions may call other
functions but not themselves, directly or indirectly. Use `for`, list
functions and quantifiers instead of recursion.";

    BadArguments = "E0206", "wrong arguments in a call",
"A function or built-in was called with the wrong number of arguments, an
unknown named argument, or an argument given twice.

    fn backend(name: string, port: port = 8080) = { ... }
    backend()                 // error: missing argument `name`
    backend(\"api\", prot = 1)  // error: no parameter `prot`; did you mean `port`?";

    OperatorType = "E0207", "operator not defined for these types",
"An operator was applied to values it does not support, typically mixing
units:

    stop_grace = 30s + 5    // error: cannot add `duration` and `int`

Durations add to durations and scale by integers (`2 * 30s`); sizes likewise;
comparisons need two values of the same type. `+` also concatenates strings
and lists.";

    Arithmetic = "E0208", "arithmetic overflow or division by zero",
"An arithmetic operation overflowed 64 bits, went below zero for a duration or
size, or divided by zero.";

    ValueTooLarge = "E0209", "value too large",
"Evaluation built a string or list larger than the limit (1,000,000 elements
or characters), or performed too many evaluation steps. The limits keep
compilation bounded; configurations never need values this large.";

    UnknownKind = "E0210", "unknown declaration kind",
"A top-level block starts with a word that is not a declaration kind.

    servce web { }    // error: did you mean `service`?

Kinds: `environment`, `image`, `service`, `endpoint`, `rule`, `variable`,
`volume`, `policy`.";

    NoSuchMember = "E0211", "no such field or method",
"A field or method was used on a value that does not have it: for example
`.contains` on a number, or `.foo` on a record without a `foo` field.";

    ImportNotFound = "E0300", "cannot load imported file",
"An `import` (or a `--policy` file) names a file that cannot be read. Import
paths are relative to the importing file's directory.

    import \"lib/backends.glint\"

The standard library is imported by name: `import \"std:policies\"`.";

    ImportCycle = "E0301", "import cycle",
"Files import each other in a loop. Move what both files need into a third
file that both import.";

    UnknownModuleMember = "E0302", "unknown module member",
"A name was looked up in an imported module (`lib.backend`) that the module
does not define with `let` or `fn`.";

    ImportOutsideRoot = "E0303", "import outside the environment root",
"Imports stay inside the environment root: the directory of the main file
(for a `--policy` file outside it, that file's own directory). An absolute
path, a path that climbs out with `..`, or a path through a symlink that
leads outside is refused without reading the file, so that `glint check` on
an untrusted change cannot print `/proc/self/environ` or `/etc/passwd` in a
diagnostic.

    import \"../../shared/lib.glint\"   // error: outside the root

Move shared files under the environment's directory (or a symlink-free copy
of them), or check from a directory that contains both.";

    ImportNotGlint = "E0304", "imported file is not a .glint file",
"An `import` names a file whose name does not end in `.glint`. Only Glint
sources can be imported (the standard library by name: `import
\"std:policies\"`); data files are not read by the compiler.";

    PolicyViolation = "E0400", "policy violated",
"A `policy` check was false for a declaration. Policies with
`severity = error` block the change (exit code 1); `severity = warning` only
reports. The message is the policy's own; the secondary label shows the
policy's check.

Fix the declaration, or (if the policy is wrong for this environment) talk to
whoever owns the policy file.";

    PolicyEvaluation = "E0401", "policy check could not be evaluated",
"A policy's `check` did not evaluate to `true` or `false`: it used an absent
optional value in a comparison, or produced a non-boolean.

    check = all s in services: s.max_age <= 24h   // error when a service has no max_age

Guard optional fields: `all s in services: s.max_age != none and s.max_age <= 24h`.";

    NotAPolicy = "E0402", "declaration in a policy file",
"A file given with `--policy` (or a file only such files import) declares
something other than a policy: a service, an endpoint, a rule, an image, an
`environment` block, ... A policy file checks the environments it is used
with; it must not add to them (an organisation's policy set must not be able
to add a public endpoint to every environment). Policy files may contain
`policy` declarations, `let` bindings, functions and imports.";

    DuplicateEnvironment = "E0500", "more than one environment block",
"An environment has at most one `environment NAME { ... }` block across all
of its files.";

    ListenConflict = "E0501", "two endpoints listen on the same address",
"Each endpoint must listen on its own address and port. Two endpoints also
overlap when they use the same port and one of them listens on every
address (`0.0.0.0:8080` takes `127.0.0.1:8080` too; `[::]:8080` takes the
IPv4 port as well): the second could never bind.";

    SharedWritableVolume = "E0502", "one read-write volume for more than one instance",
"A volume mounted read-write holds one writer at a time: Glint stops the old
instance before it starts the new one, and a second writer would corrupt
data (two PostgreSQL servers on one data directory destroy it). So a shared
volume may be mounted read-write by one service whose count can never go
above one (`instances` and `autoscale.max`).

    volume data {}
    service db {
      instances = 3                                     // error
      mounts = [{ volume = volume.data, path = \"/data\" }]
    }

Give each instance its own volume with `per_instance = true` (named
`data-0`, `data-1`, ... by slot, kept across replacements), or mount it
`read_only = true` where it is only read.";

    RulesNotEnforced = "E0600", "firewall rules declared but not enforced yet",
"The environment declares `rule`s, but Glint cannot enforce them on this
machine: that needs root (each process instance gets its own network
namespace and address) and the `nft` command (Glint's nftables table).
Nothing restricts which instance can reach which. The rules are checked,
kept in every version and shown to policies. This is a warning on `check`
and `plan`; `apply` and `up` refuse such an environment unless given
`--allow-unenforced`. See docs/network.md.";

    VariablesNotEnforced = "E0601", "variables declared but not enforced yet",
"The environment declares `variable`s with a `value` or `runtime = true`,
but this build of Glint does not deliver those to their readers nor check
who reads and writes them yet. They are checked and kept in every version.
Secret variables (`secret = \"NAME\"`) are delivered to their readers as
`/run/secrets/NAME` and are not covered by this warning. This is a
warning.";

    VolumesNotEnforced = "E0602", "volumes declared but not enforced yet",
"The environment declares `volume`s or services with `mounts`, but this
build of Glint cannot create or mount them here (process instances need
namespace isolation, hence root): data an instance writes at a mount path is
lost when the instance is replaced. This is a warning.";

    AutoscaleNotEnforced = "E0603", "autoscaling declared but not enforced yet",
"A service declares `autoscale` bounds, but this build of Glint does not
autoscale yet: the service runs its declared `instances` count whatever the
load. This is a warning.";

    ResourcesNotEnforced = "E0604", "resource limits not enforced for process instances",
"A service on the `process` provider declares `resources`, but Glint cannot
limit the memory, CPU or processes of process instances on this machine
(that needs root and the cgroup memory, cpu and pids controllers, v1 or v2);
the `docker` provider enforces them. This is a warning.";

    DockerRulesNotEnforced = "E0605", "rules on Docker services not enforced yet",
"A `rule` names a service on the `docker` provider (as `from` or `to`).
Glint enforces rules between process instances, in the kernel (each process
instance gets its own network namespace and address, and Glint's nftables
table lets through only what the rules declare), but not yet for Docker
containers: they stay on their per-environment Docker network, where every
container can reach every other. The rule is checked and kept in every
version; this is a warning.";

    SecretReference = "E0700", "a secret reference that names no Glint secret",
"A variable's `secret` names a secret that Glint keeps, sealed in its store:
set the value with `glint secret set NAME` (from standard input or
`--from-file`, never from an argument) and refer to it by name. Readers get
it as the file `/run/secrets/NAME`.

    variable db_password {
      secret  = \"vault:shop/db/password\"   // error: not a Glint secret
      readers = [service.api]
    }

    variable db_password {
      secret  = \"shop/db/password\"         // ok (or \"glint:shop/db/password\")
      readers = [service.api]
    }

A name is parts of letters, digits, `.`, `_` and `-` separated by `/` (at
most 128 bytes). A value that looks like a credential rather than a name
(whitespace, longer than a name may be, a part of 20 or more characters
mixing lower case, upper case and digits, a PEM block) is refused without
being repeated: never paste a value into a .glint file; it would be stored
in clear in every version. If you did, change the credential.";

    WriterOfDeclaredValue = "E0701", "a variable with writers that is not written at run time",
"Only a `runtime = true` variable is written while the environment runs:
its `writers` may change it through the instance API
(`PUT /v1/variables/NAME`), with compare-and-set on its version index. A
variable with a `value` (or a `secret`) is fixed by the version that
declares it; a change is a new version, which replaces its readers. So
`writers` on such a variable would promise a write that Glint refuses.

    variable flags {
      value   = \"new-checkout=on\"
      writers = [service.admin]      // error: `value` is fixed per version
    }

    variable flags {
      runtime = true                 // ok: written at run time
      value   = \"new-checkout=on\"    // the initial value
      readers = [service.web]
      writers = [service.admin]
    }

Add `runtime = true`, or remove `writers`.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Code {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_uppercase();
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or(())
    }
}

/// The long explanation of a code (`E0103`, case-insensitive), with its title
/// as a first line.
pub fn explain(code: &str) -> Option<String> {
    let code: Code = code.parse().ok()?;
    Some(format!(
        "{}: {}\n\n{}\n",
        code.as_str(),
        code.title(),
        code.explanation()
    ))
}
