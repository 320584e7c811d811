//! Fuzz target: any bytes as a main file (with an importable library) must
//! compile to diagnostics or an environment without panicking, overflowing
//! the stack or hanging, and formatting must be idempotent.
//!
//! Run (stable toolchain, no sanitizer):
//!   cd fuzz && mkdir -p corpus/compile && cp $(find ../examples -name "*.glint") corpus/compile/
//!   cargo fuzz run -s none compile corpus/compile -- -dict=glint.dict -max_len=4096 -max_total_time=600

#![no_main]

use libfuzzer_sys::fuzz_target;

const TEMPLATES: &str = include_str!("../../examples/three-tier/lib/templates.glint");

fuzz_target!(|data: &[u8]| {
    let mut loader = glint_lang::MemoryLoader::new();
    loader.add("main.glint", data.to_vec());
    loader.add("lib/templates.glint", TEMPLATES);
    let c = glint_lang::compile(
        "main.glint",
        &loader,
        &glint_lang::CompileOptions::default(),
    );
    assert_eq!(c.has_errors(), c.environment.is_none());
    // Every diagnostic points into a loaded file.
    for d in &c.diagnostics.list {
        assert!(c.diagnostics.sources.get(d.primary.span.file).is_some(), "{}", d.message);
    }
    // Human text never carries a control character but its line breaks.
    assert!(
        !c.diagnostics
            .render_human(false)
            .chars()
            .any(|ch| ch.is_control() && ch != '\n')
    );
    let _ = c.diagnostics.render_human(true);
    let _ = c.diagnostics.render_json();
    if let Ok(once) = glint_lang::format("main.glint", data) {
        let twice = glint_lang::format("main.glint", once.as_bytes());
        assert_eq!(twice.ok().as_deref(), Some(once.as_str()));
    }
});
