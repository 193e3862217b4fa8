//! Dockerfile text (BuildKit's grammar: directives, continuations, heredocs, flags),
//! ONBUILD triggers, the shell-word lexer and .dockerignore patterns: nothing panics,
//! and errors name a line that exists.
#![no_main]

use husk::build::dockerignore::{read_patterns, Rules};
use husk::build::lex::{Lexer, NoVars};
use husk::build::parser::{parse, parse_trigger};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text, "Dockerfile") {
        Ok(df) => assert_eq!(df.name, "Dockerfile"),
        Err(e) => {
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.lines().count().max(1), "line {line} of {:?}: {e:?}", text);
            }
        }
    }
    let _ = parse_trigger(text);
    for escape in ['\\', '`'] {
        let mut lexer = Lexer::new(escape);
        let _ = lexer.process(text, &NoVars);
        lexer.raw_quotes = true;
        lexer.keep_unset = true;
        let _ = lexer.process(text, &NoVars);
    }
    let patterns = read_patterns(text);
    if let Ok(rules) = Rules::from_patterns(&patterns) {
        for path in ["a", "a/b/c", "Dockerfile", ".dockerignore", "x/../y"] {
            let _ = rules.is_excluded(path);
        }
        for p in &patterns {
            let _ = rules.is_excluded(p);
        }
    }
});
