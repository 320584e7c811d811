//! The `image` table: base, build statements, run-time configuration and the
//! build context its sources must stay inside.

use super::StatementInfo;
use super::view::{int, opt, reference, s, string_map, strs, sym};
use super::{BlockDef, BlockInfo, BlockKind, Cx, FieldDef, FieldDefault as D, FieldInfo, What};
use crate::codes::Code;
use crate::decode::{absolute_path, command, env_map, invalid, port, string, strings, type_error};
use crate::diag::Diagnostic;
use crate::source::{Span, join_path, within};
use crate::value::{Kind, Record, SV, Step, Value};
use glint_model::*;
use std::rc::Rc;

pub(crate) const IMAGE_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Image,
    path: "image",
    doc: "an immutable image: a base, ordered build steps, tests and run-time configuration",
    statements: &[
        StatementInfo {
            keyword: "copy",
            syntax: "copy SRC to DST",
            doc: "copy a file or directory (SRC, relative to this file, inside the build context) to DST (absolute, in the image)",
        },
        StatementInfo {
            keyword: "run",
            syntax: "run CMD",
            doc: "run a command inside the image being built (no network, fixed clock); a list (argv) or a string (`/bin/sh -c`)",
        },
        StatementInfo {
            keyword: "test",
            syntax: "test CMD",
            doc: "like `run`, against the finished image; a failure fails the build",
        },
    ],
    capability: None,
};

/// An image being decoded.
pub(crate) struct ImageDraft {
    /// The image (every default applied).
    pub img: Image,
    /// The declared build context (root-relative) and where it was written.
    pub context: Option<(String, Span)>,
}

impl Default for ImageDraft {
    fn default() -> Self {
        ImageDraft {
            img: Image::scratch(Vec::new()),
            context: None,
        }
    }
}

pub(crate) static IMAGE: BlockDef<ImageDraft, Image> = BlockDef {
    finish: Some(finish_image),
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "from",
                "`scratch`, `image.NAME`, or `archive(\"path.tar\", sha256:…)`",
                D::Value("scratch"),
                "what the image starts from: nothing, another image, or a local archive pinned by digest",
                "image.app",
            )
            .words(&["scratch"])
            .aliases(&["base"]),
            decode: Some(|cx, v, d| {
                d.img.from = match &v.v {
                    Value::Sym(s) if &**s == "scratch" => ImageBase::Scratch,
                    Value::Ref(Kind::Image, n) => ImageBase::Image {
                        name: Name::new(n.to_string()).ok()?,
                    },
                    Value::Tagged(t, r) if &**t == "archive" => {
                        let path = r.get("path").and_then(|p| match &p.v {
                            Value::Str(s) => Some(s.to_string()),
                            _ => None,
                        });
                        let digest = r.get("digest").and_then(|d| match &d.v {
                            Value::Digest(d) => Some((**d).clone()),
                            _ => None,
                        });
                        ImageBase::Archive {
                            path: path?,
                            digest: digest?,
                        }
                    }
                    _ => {
                        type_error(
                            cx.ev,
                            v,
                            "`scratch`, `image.NAME` or `archive(\"path\", sha256:...)`",
                            None,
                        );
                        return None;
                    }
                };
                Some(())
            }),
            view: Some(|m, _| match &m.from {
                ImageBase::Scratch => sym("scratch"),
                ImageBase::Image { name } => reference(Kind::Image, name),
                ImageBase::Archive { path, digest } => {
                    let mut r = Record::default();
                    r.set("path", s(path), Span::default());
                    r.set(
                        "digest",
                        Value::Digest(Rc::new(digest.clone())),
                        Span::default(),
                    );
                    Value::Tagged(Rc::from("archive"), Rc::new(r))
                }
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "entrypoint",
                "list of strings (or one string)",
                D::Value("[]"),
                "the program (argv) an instance runs; absolute paths are inside the image",
                "[\"/bin/app\"]",
            )
            .aliases(&["command", "cmd"]),
            decode: Some(|cx, v, d| {
                d.img.entrypoint = match &v.v {
                    Value::Str(_) => vec![string(cx.ev, v)?],
                    _ => strings(cx.ev, v)?,
                };
                Some(())
            }),
            view: Some(|m, _| strs(&m.entrypoint)),
        },
        FieldDef {
            info: FieldInfo::new(
                "env",
                "map of strings",
                D::Value("{}"),
                "environment variables set in the image",
                "{ LANG = \"C.UTF-8\" }",
            )
            .aliases(&["environment"]),
            decode: Some(|cx, v, d| {
                d.img.env = env_map(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| string_map(&m.env)),
        },
        FieldDef {
            info: FieldInfo::new(
                "workdir",
                "absolute path",
                D::Value("\"/\""),
                "the working directory of an instance's program",
                "\"/srv\"",
            ),
            decode: Some(|cx, v, d| {
                d.img.workdir = absolute_path(cx.ev, v, "workdir")?;
                Some(())
            }),
            view: Some(|m, _| s(&m.workdir)),
        },
        FieldDef {
            info: FieldInfo::new(
                "port",
                "`port`",
                D::Absent,
                "the port the program listens on, if it serves one (services default to it)",
                "8080",
            ),
            decode: Some(|cx, v, d| {
                d.img.port = Some(port(cx.ev, v)?);
                Some(())
            }),
            view: Some(|m, _| opt(m.port.map(int))),
        },
        FieldDef {
            info: FieldInfo::new(
                "digest",
                "`digest`",
                D::Absent,
                "the digest the build must produce (pins the image)",
                "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            ),
            decode: Some(|cx, v, d| match &v.v {
                Value::Digest(x) => {
                    d.img.digest = Some((**x).clone());
                    Some(())
                }
                _ => {
                    type_error(
                        cx.ev,
                        v,
                        "digest",
                        Some("write `sha256:` and 64 hex digits, without quotes".into()),
                    );
                    None
                }
            }),
            view: Some(|m, _| opt(m.digest.clone().map(|d| Value::Digest(Rc::new(d))))),
        },
        FieldDef {
            info: FieldInfo::new(
                "context",
                "string, a directory relative to this file",
                D::Derived("the environment root"),
                "the directory the build may read: every `copy` source and archive must be inside it",
                "\"../..\"",
            )
            .hidden(),
            decode: Some(|cx, v, d| {
                let p = string(cx.ev, v)?;
                if p.starts_with('/') || p.is_empty() {
                    invalid(
                        cx.ev,
                        v,
                        format!("build context `{p}` is not a relative path"),
                        "a build context is a directory relative to this file",
                        Some(
                            "absolute paths would mean different files on different machines; write a path such as \"..\" or \"build\""
                                .into(),
                        ),
                    );
                    return None;
                }
                let key = join_path(cx.ev.prog.file_key(v.span.file), &p);
                d.context = Some((key.trim_end_matches('/').to_owned(), v.span));
                Some(())
            }),
            view: None,
        },
        FieldDef {
            info: FieldInfo::new(
                "tests",
                "int",
                D::Value("0"),
                "the number of `test` statements",
                "1",
            )
            .view_only(),
            decode: None,
            view: Some(|m, _| int(i64::try_from(m.tests.len()).unwrap_or(i64::MAX))),
        },
    ],
};

fn finish_image(
    cx: &mut Cx<'_, '_>,
    rec: &Record,
    _at: Span,
    _what: &What<'_>,
    d: &mut ImageDraft,
) -> Option<()> {
    let mut ok = true;
    let context = d.context.clone();
    let ctx = context.as_ref().map(|(c, _)| c.as_str()).unwrap_or(".");
    let mut steps = Vec::new();
    let mut tests = Vec::new();
    for step in &rec.steps {
        match step {
            Step::Copy { src, dst } => {
                let (Some(s), Some(dst_path)) = (string(cx.ev, src), string(cx.ev, dst)) else {
                    ok = false;
                    continue;
                };
                if !dst_path.starts_with('/') {
                    invalid(
                        cx.ev,
                        dst,
                        format!("destination `{dst_path}` is not absolute"),
                        "paths inside an image start with `/`",
                        Some(format!("write \"/{dst_path}\"")),
                    );
                    ok = false;
                    continue;
                }
                if !in_context(
                    cx,
                    &s,
                    src,
                    ctx,
                    context.as_ref().map(|c| c.1),
                    "copy source",
                ) {
                    ok = false;
                    continue;
                }
                steps.push(ImageStep::Copy {
                    src: s,
                    dst: dst_path,
                });
            }
            Step::Run(v) => match command(cx.ev, v) {
                Some(argv) => steps.push(ImageStep::Run { argv }),
                None => ok = false,
            },
            Step::Test(v) => match command(cx.ev, v) {
                Some(argv) => tests.push(argv),
                None => ok = false,
            },
        }
    }
    if let ImageBase::Archive { path, .. } = &d.img.from
        && let Some(from) = rec.get("from")
    {
        let path = path.clone();
        ok &= in_context(
            cx,
            &path,
            from,
            ctx,
            context.as_ref().map(|c| c.1),
            "archive",
        );
    }
    d.img.steps = steps;
    d.img.tests = tests;
    ok.then_some(())
}

/// Whether `path` (root-relative) is inside the build context `ctx`
/// (root-relative), as written and on disk (the loader follows symlinks).
/// Reports it if not.
fn in_context(
    cx: &mut Cx<'_, '_>,
    path: &str,
    at: &SV,
    ctx: &str,
    declared: Option<Span>,
    what: &str,
) -> bool {
    let shown_ctx = if ctx == "." {
        "the environment root".to_owned()
    } else {
        format!("`{ctx}`")
    };
    let problem = if !within(path, ctx) {
        Some(format!(
            "{what} `{path}` is outside the build context ({shown_ctx})"
        ))
    } else {
        cx.loader.check_within(path, ctx).err().map(|e| {
            format!(
                "{what} `{path}` leaves the build context ({shown_ctx}): {}",
                e.reason
            )
        })
    };
    let Some(message) = problem else {
        return true;
    };
    let mut d = Diagnostic::error(Code::OutsideContext, at.span, message)
        .with_primary("outside the image's build context");
    d = match declared {
        Some(span) => d
            .with_label(span, "the build context")
            .with_help("sources must be inside the declared context; widen `context` if this file is meant to be read"),
        None => d.with_help(
            "an image reads only files inside the environment's directory; to read from elsewhere, declare the directory with `context = \"..\"` (relative to this file)",
        ),
    };
    cx.ev.diags.push(d);
    false
}
