//! The editor functions (`glint_lang::ide`) never panic on text being
//! typed: every prefix of the examples (each a half-written file), at
//! every line start and a few offsets in each, and random bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_lang::FileId;
use glint_lang::ide::context::{key_at, position_at};
use glint_lang::ide::highlight::highlight;
use glint_lang::ide::literals::literal_at;
use glint_lang::ide::{FileIndex, Project};
use proptest::prelude::*;

const EXAMPLES: &[&str] = &[
    include_str!("../../../examples/three-tier/main.glint"),
    include_str!("../../../examples/three-tier/lib/templates.glint"),
    include_str!("../../../examples/policies/org.glint"),
    include_str!("../std/policies.glint"),
];

fn everything_at(text: &str, offsets: impl Iterator<Item = usize>) {
    let ix = FileIndex::build("m.glint", text, FileId(0));
    let hs = highlight(text, &ix);
    for w in hs.windows(2) {
        assert!(w[0].span.end <= w[1].span.start);
    }
    let _ = FileIndex::outline(text, FileId(0));
    let project = Project::new(vec![ix]);
    for off in offsets {
        let _ = position_at(text, FileId(0), off);
        let _ = key_at(text, FileId(0), off);
        let _ = literal_at(text, FileId(0), off);
        let o = u32::try_from(off).unwrap();
        if let Some((sym, _)) = project.symbol_at(FileId(0), o) {
            let _ = project.references(&sym);
            let _ = project.definitions(&sym);
        }
        let _ = project.rename(FileId(0), o, "renamed");
    }
}

#[test]
fn every_prefix_of_the_examples_is_handled() {
    for src in EXAMPLES {
        let cuts: Vec<usize> = src
            .char_indices()
            .map(|(i, _)| i)
            .filter(|i| i % 7 == 0 || src[..*i].ends_with('\n'))
            .chain([src.len()])
            .collect();
        for cut in cuts {
            let text = &src[..cut];
            let offsets = [0, cut / 2, cut]
                .into_iter()
                .filter(|o| text.is_char_boundary(*o));
            everything_at(text, offsets);
        }
    }
}

#[test]
fn every_offset_of_the_examples_is_handled() {
    for src in EXAMPLES {
        everything_at(src, src.char_indices().map(|(i, _)| i).chain([src.len()]));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_text_is_handled(s in "[a-z{}\\[\\]()=.,:\"$ \n0-9/*+-]{0,200}", at in 0usize..200) {
        let at = at.min(s.len());
        everything_at(&s, [at].into_iter());
    }
}
