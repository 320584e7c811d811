//! The files of one environment together: where a name is defined, where
//! it is used, and what a rename must change, across files.
//!
//! Declarations are shared by the whole environment (`service.db` in any
//! file means the one `service db`); `let` and `fn` are seen by other
//! files only as members of an import (`tpl.backend`), found through the
//! import's key. The set of files is the caller's: normally the files one
//! compilation loaded (`Diagnostics::sources`), which the loader kept
//! inside the environment's root.

use super::symbols::{Def, DefKind, FileIndex, RefTarget};
use crate::source::{FileId, Span};
use crate::value::Kind;

/// What a definition or a reference is about, environment-wide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Symbol {
    /// A declaration, by kind and name (a reference's name, or a
    /// definition's name or template text).
    Decl(Kind, String),
    /// A definition of one file (a `let`, `fn`, parameter, variable or
    /// import): the file and the index of the definition.
    Binding(FileId, usize),
}

/// Why a rename cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenameError {
    /// Nothing renameable is at the cursor.
    #[error("there is nothing to rename here")]
    NothingHere,
    /// The new name is not a valid name for this kind of definition.
    #[error("`{name}` is not a valid {what} name: {rule}")]
    InvalidName {
        /// The name asked for.
        name: String,
        /// What would be renamed.
        what: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The declaration's name is computed (`"worker-${queue}"`).
    #[error("{kind} `{name}` is named by a template; edit the template instead")]
    Templated {
        /// The kind.
        kind: Kind,
        /// The template text.
        name: String,
    },
    /// The definition is in a file the editor cannot change (the standard
    /// library).
    #[error("`{name}` is defined in the standard library")]
    Builtin {
        /// The name.
        name: String,
    },
}

/// One edit of a rename: replace `span` by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// What to replace (empty for an insertion).
    pub span: Span,
    /// The new text.
    pub text: String,
}

/// The index of every file of an environment.
#[derive(Debug, Clone, Default)]
pub struct Project {
    /// The files, in load order.
    pub files: Vec<FileIndex>,
}

impl Project {
    /// A project of indexed files.
    pub fn new(files: Vec<FileIndex>) -> Project {
        Project { files }
    }

    /// Indexes `(key, text)` pairs; the nth gets `FileId(n)`.
    pub fn from_texts<'t>(texts: impl IntoIterator<Item = (&'t str, &'t str)>) -> Project {
        let files = texts
            .into_iter()
            .enumerate()
            .map(|(i, (key, text))| {
                FileIndex::build(key, text, FileId(u32::try_from(i).unwrap_or(u32::MAX)))
            })
            .collect();
        Project { files }
    }

    /// The file with this id.
    pub fn file(&self, id: FileId) -> Option<&FileIndex> {
        self.files.iter().find(|f| f.file == id)
    }

    /// The file with this key.
    pub fn file_by_key(&self, key: &str) -> Option<&FileIndex> {
        self.files.iter().find(|f| f.key == key)
    }

    /// A definition by file and index.
    pub fn def(&self, file: FileId, i: usize) -> Option<&Def> {
        self.file(file).and_then(|f| f.defs.get(i))
    }

    /// The symbol at `offset` of `file` (a reference or a definition's
    /// name) and the span under the cursor.
    pub fn symbol_at(&self, file: FileId, offset: u32) -> Option<(Symbol, Span)> {
        let f = self.file(file)?;
        if let Some(r) = f.ref_at(offset) {
            return self.resolve(file, &r.target).map(|s| (s, r.span));
        }
        let i = f.def_at(offset)?;
        let d = &f.defs[i];
        Some((self.symbol_of_def(file, i), d.name_span))
    }

    /// The symbol a definition stands for.
    pub fn symbol_of_def(&self, file: FileId, i: usize) -> Symbol {
        match self.def(file, i) {
            Some(Def {
                kind: DefKind::Decl(k),
                name,
                ..
            }) => Symbol::Decl(*k, name.clone()),
            _ => Symbol::Binding(file, i),
        }
    }

    /// What a reference of `file` points to (`None`: a member that the
    /// imported module does not define, or a module not in the project).
    pub fn resolve(&self, file: FileId, target: &RefTarget) -> Option<Symbol> {
        match target {
            RefTarget::Def(i) => Some(Symbol::Binding(file, *i)),
            RefTarget::Decl(k, n) => Some(Symbol::Decl(*k, n.clone())),
            RefTarget::Member { import, name } => {
                let key = self.def(file, *import)?.import.as_ref()?.key.clone();
                let target = self.file_by_key(&key)?;
                let i = *target.globals.get(name)?;
                matches!(target.defs[i].kind, DefKind::Let | DefKind::Fn)
                    .then_some(Symbol::Binding(target.file, i))
            }
        }
    }

    /// Where a symbol is defined: `(file, definition index)`. A declaration
    /// reference finds the declaration of that name, or the templates that
    /// could produce it; a template finds itself.
    pub fn definitions(&self, sym: &Symbol) -> Vec<(FileId, usize)> {
        match sym {
            Symbol::Binding(f, i) => vec![(*f, *i)],
            Symbol::Decl(k, name) => {
                let mut exact = Vec::new();
                let mut templates = Vec::new();
                for f in &self.files {
                    for (i, d) in f.defs.iter().enumerate() {
                        if d.kind != DefKind::Decl(*k) {
                            continue;
                        }
                        if d.name == *name {
                            exact.push((f.file, i));
                        } else if d.template.as_ref().is_some_and(|t| t.matches(name)) {
                            templates.push((f.file, i));
                        }
                    }
                }
                if exact.is_empty() { templates } else { exact }
            }
        }
    }

    /// Every use of a symbol: the spans a rename replaces (definitions not
    /// included). The uses of a template are the references it could
    /// produce.
    pub fn references(&self, sym: &Symbol) -> Vec<Span> {
        let mut out = Vec::new();
        match sym {
            Symbol::Decl(k, name) => {
                let template = self
                    .definitions(sym)
                    .into_iter()
                    .filter_map(|(f, i)| self.def(f, i))
                    .find(|d| d.name == *name)
                    .and_then(|d| d.template.clone());
                for f in &self.files {
                    for r in &f.refs {
                        if let RefTarget::Decl(rk, rn) = &r.target
                            && rk == k
                            && (rn == name || template.as_ref().is_some_and(|t| t.matches(rn)))
                        {
                            out.push(r.span);
                        }
                    }
                }
            }
            Symbol::Binding(file, i) => {
                for f in &self.files {
                    for r in &f.refs {
                        let hit = match &r.target {
                            RefTarget::Def(j) => f.file == *file && j == i,
                            RefTarget::Member { .. } => {
                                self.resolve(f.file, &r.target).as_ref() == Some(sym)
                            }
                            RefTarget::Decl(..) => false,
                        };
                        if hit {
                            out.push(r.span);
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The spans of a symbol's definitions' names.
    pub fn definition_spans(&self, sym: &Symbol) -> Vec<Span> {
        self.definitions(sym)
            .into_iter()
            .filter_map(|(f, i)| self.def(f, i).map(|d| d.name_span))
            .collect()
    }

    /// The edits that rename the symbol at `offset` of `file` to `new`,
    /// in every file of the project.
    pub fn rename(&self, file: FileId, offset: u32, new: &str) -> Result<Vec<Edit>, RenameError> {
        let (sym, _) = self
            .symbol_at(file, offset)
            .ok_or(RenameError::NothingHere)?;
        let defs = self.definitions(&sym);
        let mut edits = Vec::new();
        match &sym {
            Symbol::Decl(kind, _) => {
                if let Some(d) = defs
                    .iter()
                    .filter_map(|(f, i)| self.def(*f, *i))
                    .find(|d| d.template.is_some())
                {
                    return Err(RenameError::Templated {
                        kind: *kind,
                        name: d.name.clone(),
                    });
                }
                if !glint_model::Name::is_valid(new) {
                    return Err(RenameError::InvalidName {
                        name: new.to_owned(),
                        what: kind.keyword(),
                        rule: "names are 1 to 63 lowercase letters, digits, `_` or `-`, starting with a letter",
                    });
                }
                // A declaration written `service "db"` keeps its quotes
                // (the span is inside them); references by index too.
                for span in self.definition_spans(&sym) {
                    edits.push(Edit {
                        span,
                        text: new.to_owned(),
                    });
                }
            }
            Symbol::Binding(f, i) => {
                let d = self.def(*f, *i).ok_or(RenameError::NothingHere)?;
                if self.file(*f).is_some_and(|x| x.key.starts_with("std:")) {
                    return Err(RenameError::Builtin {
                        name: d.name.clone(),
                    });
                }
                if !super::is_plain_name(new) {
                    return Err(RenameError::InvalidName {
                        name: new.to_owned(),
                        what: d.kind.describe(),
                        rule: "a name is letters, digits, `_` and `-`, starting with a letter or `_`, and not a keyword",
                    });
                }
                match &d.import {
                    // `import "lib/x.glint"` is named after the file: the
                    // rename adds an alias instead of touching the path.
                    Some(imp) if !imp.aliased => edits.push(Edit {
                        span: Span {
                            file: imp.path_span.file,
                            start: imp.path_span.end,
                            end: imp.path_span.end,
                        },
                        text: format!(" as {new}"),
                    }),
                    _ => edits.push(Edit {
                        span: d.name_span,
                        text: new.to_owned(),
                    }),
                }
            }
        }
        for span in self.references(&sym) {
            edits.push(Edit {
                span,
                text: new.to_owned(),
            });
        }
        edits.sort_by_key(|e| e.span);
        edits.dedup();
        Ok(edits)
    }

    /// The declared names of a kind (templates excluded), with their
    /// definitions.
    pub fn decl_names(&self, kind: Kind) -> Vec<(&str, &Def)> {
        let mut out: Vec<(&str, &Def)> = self
            .files
            .iter()
            .flat_map(|f| f.defs.iter())
            .filter(|d| d.kind == DefKind::Decl(kind) && d.template.is_none())
            .map(|d| (d.name.as_str(), d))
            .collect();
        out.sort_by_key(|(n, _)| *n);
        out.dedup_by_key(|(n, _)| *n);
        out
    }

    /// The members (`let` and `fn`) of the module imported in `file` by
    /// the import definition `import`.
    pub fn members(&self, file: FileId, import: usize) -> Vec<&Def> {
        let Some(key) = self
            .def(file, import)
            .and_then(|d| d.import.as_ref())
            .map(|i| i.key.clone())
        else {
            return Vec::new();
        };
        let Some(target) = self.file_by_key(&key) else {
            return Vec::new();
        };
        let mut out: Vec<&Def> = target
            .globals
            .values()
            .map(|i| &target.defs[*i])
            .filter(|d| matches!(d.kind, DefKind::Let | DefKind::Fn))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The declaration kind whose body the record of the top-level `fn` or
    /// `let` named `name` in `file` is spread into (`...tpl.backend(...)`
    /// in a service makes `backend`'s fields service fields), if every
    /// spread of it agrees.
    pub fn spread_kind(&self, file: FileId, name: &str) -> Option<Kind> {
        let f = self.file(file)?;
        let i = *f.globals.get(name)?;
        let sym = Symbol::Binding(file, i);
        let mut kind = None;
        for g in &self.files {
            for s in &g.spreads {
                if self.resolve(g.file, &s.target).as_ref() == Some(&sym) {
                    match kind {
                        None => kind = Some(s.kind),
                        Some(k) if k != s.kind => return None,
                        Some(_) => {}
                    }
                }
            }
        }
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "import \"lib/t.glint\" as tpl\n\nservice web {\n  ...tpl.backend(image.app)\n}\n\nservice db {\n  image = image.app\n}\n\nimage app {\n  entrypoint = [\"/app\"]\n}\n\nrule web_to_db {\n  from = service.web\n  to   = service.db\n}\n\nfor q in [\"a\", \"b\"] {\n  service \"worker-${q}\" {\n    ...tpl.backend(image.app)\n  }\n}\n\nvariable v {\n  value = \"x\"\n  readers = [service.worker-a, service[\"db\"]]\n}\n";
    const LIB: &str = "fn backend(image: image) = {\n  image = image\n  env = { DB = service.db.name }\n}\n\nlet unused = 1\n";

    fn project() -> Project {
        Project::from_texts([("main.glint", MAIN), ("lib/t.glint", LIB)])
    }

    fn offset(text: &str, needle: &str) -> u32 {
        text.find(needle).map(|i| i as u32).unwrap_or(u32::MAX)
    }

    fn text_of(p: &Project, span: Span) -> &'static str {
        let text = if p.file(span.file).map(|f| f.key.as_str()) == Some("main.glint") {
            MAIN
        } else {
            LIB
        };
        &text[span.start as usize..span.end as usize]
    }

    #[test]
    fn a_declaration_reference_in_another_file_finds_the_declaration() {
        let p = project();
        let at = offset(LIB, "db.name");
        let (sym, hit) = p
            .symbol_at(FileId(1), at)
            .unwrap_or_else(|| panic!("nothing at {at}"));
        assert_eq!(sym, Symbol::Decl(Kind::Service, "db".into()));
        assert_eq!(text_of(&p, hit), "db");
        let defs = p.definition_spans(&sym);
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0].file, FileId(0));
        assert_eq!(defs[0].start, offset(MAIN, "db {"));
    }

    #[test]
    fn a_module_member_finds_its_function_in_the_imported_file() {
        let p = project();
        let (sym, _) = p
            .symbol_at(FileId(0), offset(MAIN, "backend"))
            .unwrap_or_else(|| panic!("nothing"));
        let defs = p.definition_spans(&sym);
        assert_eq!(defs.len(), 1);
        assert_eq!(
            (defs[0].file, defs[0].start),
            (FileId(1), offset(LIB, "backend"))
        );
        // Both spreads use it.
        assert_eq!(p.references(&sym).len(), 2);
    }

    #[test]
    fn references_of_a_service_cover_every_file_and_form() {
        let p = project();
        let sym = Symbol::Decl(Kind::Service, "db".into());
        let refs: Vec<(FileId, &str)> = p
            .references(&sym)
            .into_iter()
            .map(|s| (s.file, text_of(&p, s)))
            .collect();
        assert_eq!(
            refs,
            vec![(FileId(0), "db"), (FileId(0), "db"), (FileId(1), "db")],
            "rule `to`, variable readers by index, and the library"
        );
    }

    #[test]
    fn rename_changes_the_declaration_and_every_reference() {
        let p = project();
        let edits = p
            .rename(FileId(0), offset(MAIN, "db {"), "database")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(edits.len(), 4);
        assert!(edits.iter().all(|e| e.text == "database"));
        assert!(edits.iter().all(|e| text_of(&p, e.span) == "db"));
        assert_eq!(edits.iter().filter(|e| e.span.file == FileId(1)).count(), 1);
    }

    #[test]
    fn rename_refuses_bad_names_and_templates() {
        let p = project();
        let bad = p.rename(FileId(0), offset(MAIN, "db {"), "Data Base");
        assert!(
            matches!(bad, Err(RenameError::InvalidName { .. })),
            "{bad:?}"
        );
        let t = p.rename(FileId(0), offset(MAIN, "worker-a"), "w");
        assert!(matches!(t, Err(RenameError::Templated { .. })), "{t:?}");
        let kw = p.rename(FileId(1), offset(LIB, "unused"), "let");
        assert!(matches!(kw, Err(RenameError::InvalidName { .. })), "{kw:?}");
    }

    #[test]
    fn a_templated_declaration_is_found_from_its_expansions() {
        let p = project();
        let (sym, _) = p
            .symbol_at(FileId(0), offset(MAIN, "worker-a"))
            .unwrap_or_else(|| panic!("nothing"));
        let defs = p.definition_spans(&sym);
        assert_eq!(defs.len(), 1);
        assert_eq!(text_of(&p, defs[0]), "\"worker-${q}\"");
        // From the template, its possible uses.
        let (tsym, _) = p
            .symbol_at(FileId(0), offset(MAIN, "\"worker-${q}\"") + 1)
            .unwrap_or_else(|| panic!("nothing at the template"));
        assert_eq!(p.references(&tsym).len(), 1);
    }

    #[test]
    fn renaming_a_function_renames_members_in_importing_files() {
        let p = project();
        let edits = p
            .rename(FileId(1), offset(LIB, "backend"), "service_base")
            .unwrap_or_else(|e| panic!("{e}"));
        let files: Vec<FileId> = edits.iter().map(|e| e.span.file).collect();
        assert_eq!(files, vec![FileId(0), FileId(0), FileId(1)]);
    }

    #[test]
    fn renaming_an_unaliased_import_adds_an_alias() {
        let p = Project::from_texts([
            ("main.glint", "import \"lib/t.glint\"\nlet x = t.unused\n"),
            ("lib/t.glint", LIB),
        ]);
        let edits = p
            .rename(
                FileId(0),
                offset("import \"lib/t.glint\"\nlet x = t.unused\n", "t.unused"),
                "lib",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(edits.len(), 2);
        assert_eq!(edits[0].text, " as lib");
        assert!(edits[0].span.is_empty());
        assert_eq!(edits[1].text, "lib");
    }

    #[test]
    fn functions_spread_into_services_have_service_fields() {
        let p = project();
        assert_eq!(p.spread_kind(FileId(1), "backend"), Some(Kind::Service));
        assert_eq!(p.spread_kind(FileId(1), "unused"), None);
    }

    #[test]
    fn declared_names_and_module_members_are_listed() {
        let p = project();
        let names: Vec<&str> = p
            .decl_names(Kind::Service)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec!["db", "web"]);
        let members: Vec<&str> = p
            .members(FileId(0), 0)
            .into_iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(members, vec!["backend", "unused"]);
    }
}
