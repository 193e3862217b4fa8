//! Parser cases: the shapes of BuildKit's `parser/testfiles` (continuations,
//! escapes, JSON forms, heredocs, comments in odd places, ENV forms, flags)
//! written anew, plus error cases with their line numbers.

use super::*;
use std::time::Duration;

fn parse_ok(text: &str) -> Dockerfile {
    match parse(text, "Dockerfile") {
        Ok(df) => df,
        Err(e) => panic!("parse failed: {}\n---\n{}", e, text),
    }
}

/// The instructions of the first stage.
fn steps(text: &str) -> Vec<Instruction> {
    parse_ok(text).stages[0].steps.iter().map(|s| s.instruction.clone()).collect()
}

/// The one instruction after `FROM x`.
fn one(line: &str) -> Instruction {
    let s = steps(&format!("FROM x\n{}\n", line));
    assert_eq!(s.len(), 1, "{:?}", s);
    s.into_iter().next().unwrap()
}

fn error(text: &str) -> String {
    match parse(text, "Dockerfile") {
        Ok(df) => panic!("parsed, wanted an error: {:?}", df),
        Err(e) => e.to_string(),
    }
}

fn shell(s: &str) -> Instruction {
    Instruction::Run(Run { command: CommandLine::Shell(s.into()), heredocs: vec![], network: RunNetwork::Default })
}

fn exec(args: &[&str]) -> CommandLine {
    CommandLine::Exec(args.iter().map(|s| s.to_string()).collect())
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: v.into(), legacy: false }
}

fn legacy(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: v.into(), legacy: true }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn run_of(i: &Instruction) -> &Run {
    match i {
        Instruction::Run(r) => r,
        other => panic!("not a RUN: {:?}", other),
    }
}

fn copy_of(i: &Instruction) -> &CopySpec {
    match i {
        Instruction::Copy(c) | Instruction::Add(c) => c,
        other => panic!("not a COPY/ADD: {:?}", other),
    }
}

#[test]
fn continuations_keep_indentation_and_join_without_separator() {
    let s = steps(concat!(
        "FROM x\n",
        "RUN echo one\\\n",
        "  two\\\n",
        "  three   \\\n",
        "  fo\\\n",
        "ur\n",
        "RUN echo a  \\  \t\n",
        "b\n",
        "RUN echo glued\\\n",
        "together\n",
    ));
    assert_eq!(s, [shell("echo one  two  three     four"), shell("echo a  b"), shell("echo gluedtogether")]);
}

#[test]
fn continuation_skips_comments_and_blank_lines_with_a_warning() {
    let df = parse_ok(concat!(
        "FROM x\n",
        "RUN apt-get update && \\\n",
        "# a comment inside\n",
        "    # an indented one \\\n",
        "\n",
        "   \t\n",
        "    apt-get install -y curl\n",
        "RUN echo after\n",
    ));
    let s: Vec<_> = df.stages[0].steps.iter().map(|s| (s.line, s.end_line, s.instruction.clone())).collect();
    assert_eq!(s, [(2, 7, shell("apt-get update &&     apt-get install -y curl")), (8, 8, shell("echo after"))]);
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].line, 7);
}

#[test]
fn lone_escape_lines_inside_a_continuation() {
    assert_eq!(
        steps("FROM x\nRUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\n"),
        [shell("echo hi   world  goodnight")]
    );
}

#[test]
fn continuation_may_end_the_file() {
    assert_eq!(steps("FROM x\n\nRUN something \\"), [shell("something")]);
    assert_eq!(steps("FROM x\nRUN a \\\n\n   \n"), [shell("a")]);
}

#[test]
fn escaped_escape_at_end_is_not_a_continuation() {
    let s = steps(concat!(
        "FROM x\n",
        "ENV B another\\\\path\n",
        "ENV C trailing\\\\backslash\\\\\n",
        "ENV D not appended\n",
        "ENV E hel\\\n",
        "\\\n",
        "lo\n",
    ));
    assert_eq!(
        s,
        [
            Instruction::Env(vec![legacy("B", "another\\\\path")]),
            Instruction::Env(vec![legacy("C", "trailing\\\\backslash\\\\")]),
            Instruction::Env(vec![legacy("D", "not appended")]),
            Instruction::Env(vec![legacy("E", "hello")]),
        ]
    );
}

#[test]
fn comment_lines_ending_in_escape_do_not_continue() {
    let s = steps("FROM x\n# RUN a \\\n# still a comment \\\nRUN b\n  # indented comment\nRUN c\n");
    assert_eq!(s, [shell("b"), shell("c")]);
}

#[test]
fn hash_inside_an_instruction_is_not_a_comment() {
    assert_eq!(one("RUN echo hi # not a comment"), shell("echo hi # not a comment"));
    assert_eq!(one("LABEL a=b#c"), Instruction::Label(vec![kv("a", "b#c")]));
}

#[test]
fn instruction_names_are_case_insensitive() {
    let s = steps("from x AS Base\nrun a\nCoPy --link=true s d\nwORKdir /w\n");
    assert_eq!(s[0], shell("a"));
    assert_eq!(copy_of(&s[1]).sources, ["s"]);
    assert_eq!(s[2], Instruction::Workdir("/w".into()));
    // Flag names are not.
    assert!(error("FROM x\nCOPY --LINK s d\n").ends_with("unknown flag: --LINK"));
}

#[test]
fn escape_directive_backtick() {
    let df = parse_ok(concat!(
        "# escape=`\n",
        "\n",
        "FROM `\n",
        "    windows\n",
        "ENV GOPATH `\n",
        "C:\\go\n",
        "RUN dir c:\\ && `\n",
        "    echo done\\\n",
    ));
    assert_eq!(df.escape, '`');
    assert_eq!(df.stages[0].base, "windows");
    assert_eq!(
        df.stages[0].steps.iter().map(|s| s.instruction.clone()).collect::<Vec<_>>(),
        [Instruction::Env(vec![legacy("GOPATH", "C:\\go")]), shell("dir c:\\ &&     echo done\\")]
    );
}

#[test]
fn directive_without_blank_line_and_with_syntax_and_check() {
    let df =
        parse_ok("# Syntax = docker/dockerfile:1\n#ESCAPE= `\n# check=skip=all\n# just a comment\nFROM a `\nAS b\n");
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.check.as_deref(), Some("skip=all"));
    assert_eq!(df.escape, '`');
    assert_eq!(df.stages[0].name.as_deref(), Some("b"));
}

#[test]
fn directives_only_count_at_the_top() {
    // After an ordinary comment.
    let df = parse_ok("# hello\n# escape=`\nFROM image\nENV GOPATH \\\n\\go\n");
    assert_eq!(df.escape, '\\');
    assert_eq!(df.stages[0].steps[0].instruction, Instruction::Env(vec![legacy("GOPATH", "\\go")]));
    // After a blank line.
    assert_eq!(parse_ok("\n# escape=`\nFROM x\n").escape, '\\');
    // After an instruction it is a comment.
    assert_eq!(parse_ok("FROM x\n# escape=`\nRUN a \\\nb\n").stages[0].steps[0].instruction, shell("a b"));
    // An unknown directive ends the directives.
    assert_eq!(parse_ok("# foo=bar\n# escape=`\nFROM x\n").escape, '\\');
}

#[test]
fn directive_errors() {
    assert_eq!(
        error("# escape=`\n# escape=\\\nFROM x\n"),
        "Dockerfile:2: only one escape parser directive can be used"
    );
    assert_eq!(error("# escape=x\nFROM x\n"), "Dockerfile:1: invalid escape token 'x' does not match ` or \\");
}

#[test]
fn byte_order_mark_and_crlf() {
    let s = steps("\u{feff}FROM x\r\nRUN a \\\r\n  b\r\nENV k=v\r\n");
    assert_eq!(s, [shell("a   b"), Instruction::Env(vec![kv("k", "v")])]);
}

#[test]
fn json_forms() {
    let cases: &[(&str, CommandLine)] = &[
        ("CMD []", exec(&[])),
        ("CMD [\"\"]", exec(&[""])),
        ("CMD [\"a\"]", exec(&["a"])),
        ("CMD [\"a\",\"b\"]", exec(&["a", "b"])),
        ("CMD [ \"a\", \"b\" ]", exec(&["a", "b"])),
        ("CMD\t[\t\"a\",\t\"b\"\t]\t", exec(&["a", "b"])),
        ("CMD [\"x y\", \"♥\", \"\\\" \\\\ \\/ \\n \\t \\u0041\"]", exec(&["x y", "♥", "\" \\ / \n \t A"])),
        ("CMD echo test", CommandLine::Shell("echo test".into())),
        ("CMD echo 'test' | wc -", CommandLine::Shell("echo 'test' | wc -".into())),
        ("CMD", CommandLine::Shell("".into())),
    ];
    for (line, want) in cases {
        assert_eq!(one(line), Instruction::Cmd(want.clone()), "{}", line);
    }
    assert_eq!(one("ENTRYPOINT [ \"/usr/bin/redis\" ]"), Instruction::Entrypoint(exec(&["/usr/bin/redis"])));
    assert_eq!(one("ENTRYPOINT /bin/sh -c"), Instruction::Entrypoint(CommandLine::Shell("/bin/sh -c".into())));
    assert_eq!(run_of(&one("RUN [\"ls\", \"-la\"]")).command, exec(&["ls", "-la"]));
    assert_eq!(run_of(&one("RUN [\"echo\", \"'1234'\"]")).command, exec(&["echo", "'1234'"]));
}

#[test]
fn invalid_json_falls_back_to_shell_form() {
    let cases = [
        "CMD ['echo','single quotes are not JSON']",
        "CMD [\"echo\", \"no closing bracket\"",
        "CMD [\"echo\", \"unterminated]",
        "CMD '[\"echo\", \"JSON in a string\"]'",
        "CMD \"[\\\"echo\\\", \\\"escaped\\\"]\"",
        "CMD [\"a\"] trailing",
    ];
    for line in cases {
        assert_eq!(one(line), Instruction::Cmd(CommandLine::Shell(line[4..].into())), "{}", line);
    }
}

#[test]
fn json_arrays_must_hold_strings() {
    assert_eq!(
        error("FROM x\nCMD [\"a\", 1]\n"),
        "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
    );
    assert!(error("FROM x\nRUN [[\"nested\"]]\n").contains("comprised of strings only"));
}

#[test]
fn shell_must_be_json() {
    assert_eq!(one("SHELL [\"powershell\", \"-command\"]"), Instruction::Shell(strings(&["powershell", "-command"])));
    assert_eq!(
        error("FROM x\nSHELL powershell -command\n"),
        "Dockerfile:2: SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(
        error("FROM x\nSHELL [\"bash\" \"-c\"]\n"),
        "Dockerfile:2: SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(error("FROM x\nSHELL []\n"), "Dockerfile:2: SHELL requires at least one argument");
}

#[test]
fn run_forms_and_flags() {
    assert_eq!(one("RUN    sh -c 'echo a \\\n     > /tmp/b'"), shell("sh -c 'echo a      > /tmp/b'"));
    let r = one("RUN --network=none wget x");
    assert_eq!(
        r,
        Instruction::Run(Run {
            command: CommandLine::Shell("wget x".into()),
            heredocs: vec![],
            network: RunNetwork::None
        })
    );
    assert_eq!(run_of(&one("RUN --network=host [\"a\"]")).network, RunNetwork::Host);
    assert_eq!(run_of(&one("RUN --network=default a")).network, RunNetwork::Default);
    assert_eq!(error("FROM x\nRUN --network=bridge a\n"), "Dockerfile:2: invalid network mode \"bridge\"");
    assert_eq!(
        error("FROM x\nRUN --mount=type=cache,target=/root/.cache pip install x\n"),
        "Dockerfile:2: RUN --mount is not supported by husk"
    );
    assert_eq!(error("FROM x\nRUN --security=insecure a\n"), "Dockerfile:2: RUN --security is not supported by husk");
    assert_eq!(error("FROM x\nRUN --bogus a\n"), "Dockerfile:2: unknown flag: --bogus");
    // Words that look like flags after the command are the command's.
    assert_eq!(
        one("RUN apt-get --no-install-recommends install -y x"),
        shell("apt-get --no-install-recommends install -y x")
    );
}

#[test]
fn flag_rules() {
    let c = one("COPY --chown=\"app user\":staff --chmod=0755 --link --from=build -- /src /dst");
    assert_eq!(
        copy_of(&c),
        &CopySpec {
            sources: strings(&["/src"]),
            inline: vec![],
            dest: "/dst".into(),
            from: Some("build".into()),
            chown: Some("app user:staff".into()),
            chmod: Some("0755".into()),
            link: true,
        }
    );
    assert!(!copy_of(&one("COPY --link=FALSE a b")).link);
    assert_eq!(copy_of(&one("COPY -- --weird-name b")).sources, ["--weird-name"]);
    assert_eq!(
        error("FROM x\nCOPY --link=maybe a b\n"),
        "Dockerfile:2: expecting boolean value for flag --link, not: maybe"
    );
    assert_eq!(error("FROM x\nCOPY --link= a b\n"), "Dockerfile:2: missing a value on flag: --link");
    assert_eq!(error("FROM x\nCOPY --from a b\n"), "Dockerfile:2: missing a value on flag: --from");
    assert_eq!(error("FROM x\nCOPY --from=a --from=b a b\n"), "Dockerfile:2: duplicate flag specified: --from");
    assert_eq!(error("FROM x\nADD --from=a s d\n"), "Dockerfile:2: unknown flag: --from");
    assert_eq!(error("FROM x\nCMD --doit [\"a\", \"b\"]\n"), "Dockerfile:2: unknown flag: --doit");
    assert_eq!(error("FROM x\nMAINTAINER --boo joe@example.com\n"), "Dockerfile:2: unknown flag: --boo");
    assert_eq!(error("FROM x\nCOPY --parents a b\n"), "Dockerfile:2: COPY --parents is not supported by husk");
    assert_eq!(
        error("FROM x\nADD --checksum=sha256:00 u d\n"),
        "Dockerfile:2: ADD --checksum is not supported by husk"
    );
    assert_eq!(error("FROM x\nCOPY --exclude=*.md . /\n"), "Dockerfile:2: COPY --exclude is not supported by husk");
}

#[test]
fn copy_and_add_forms() {
    let s = steps(concat!(
        "FROM x\n",
        "COPY\t.\t/go/src/app\n",
        "ADD\t\tnull /\n",
        "ADD a b c /dir/\n",
        "ADD\t\t[ \"vimrc\", \"/tmp\" ]\n",
        "COPY [ \"test file\", \"/tmp/test file\" ]\n",
        "ADD https://example.com/a.tar.gz /opt/\n",
    ));
    let got: Vec<(&str, Vec<String>, String)> =
        s.iter().map(|i| (i.name(), copy_of(i).sources.clone(), copy_of(i).dest.clone())).collect();
    assert_eq!(
        got,
        [
            ("COPY", strings(&["."]), "/go/src/app".into()),
            ("ADD", strings(&["null"]), "/".into()),
            ("ADD", strings(&["a", "b", "c"]), "/dir/".into()),
            ("ADD", strings(&["vimrc"]), "/tmp".into()),
            ("COPY", strings(&["test file"]), "/tmp/test file".into()),
            ("ADD", strings(&["https://example.com/a.tar.gz"]), "/opt/".into()),
        ]
    );
    let msg = "COPY requires at least two arguments, but only one was provided. Destination could not be determined";
    assert_eq!(error("FROM x\nCOPY only\n"), format!("Dockerfile:2: {}", msg));
    assert_eq!(error("FROM x\nCOPY\t\n\t\tquux \\\n      bar\n"), format!("Dockerfile:2: {}", msg));
    assert_eq!(error("FROM x\nCOPY\n"), format!("Dockerfile:2: {}", msg));
    assert!(error("FROM x\nCOPY --from=$STAGE /a /b\n").contains("variable expansion is not supported for --from"));
    assert!(error("FROM x\nCOPY --from=${S:-a} /a /b\n").contains("variable expansion is not supported for --from"));
}

#[test]
fn env_forms() {
    let s = steps(concat!(
        "FROM x\n",
        "ENV name value\n",
        "ENV name=value\n",
        "ENV name=value name2=value2\n",
        "ENV name=\"value value1\"\n",
        "ENV name=value\\ value2\n",
        "ENV name=\"value'quote space'value2\"\n",
        "ENV name='value\"double quote\"value2'\n",
        "ENV name=value\\ value2 name2=value2\\ value3\n",
        "ENV name=\"a\\\"b\"\n",
        "ENV name='a\\'b'\n",
        "ENV name=\"''\"\n",
        "ENV SCUBA 1 DUBA 3\n",
        "ENV SCUBA \"1 DUBA 3\"\n",
        "ENV name=value \\\n",
        "    name1=value1 \\\n",
        "    name2=\"value2a \\\n",
        "           value2b\" \\\n",
        "\tname3=\"value3a\\n\\\"value3b\\\"\" \\\n",
    ));
    let want = [
        vec![legacy("name", "value")],
        vec![kv("name", "value")],
        vec![kv("name", "value"), kv("name2", "value2")],
        vec![kv("name", "\"value value1\"")],
        vec![kv("name", "value\\ value2")],
        vec![kv("name", "\"value'quote space'value2\"")],
        vec![kv("name", "'value\"double quote\"value2'")],
        vec![kv("name", "value\\ value2"), kv("name2", "value2\\ value3")],
        vec![kv("name", "\"a\\\"b\"")],
        vec![kv("name", "'a\\'b'")],
        vec![kv("name", "\"''\"")],
        vec![legacy("SCUBA", "1 DUBA 3")],
        vec![legacy("SCUBA", "\"1 DUBA 3\"")],
        vec![
            kv("name", "value"),
            kv("name1", "value1"),
            kv("name2", "\"value2a            value2b\""),
            kv("name3", "\"value3a\\n\\\"value3b\\\"\""),
        ],
    ];
    assert_eq!(s, want.map(Instruction::Env));
}

#[test]
fn env_and_label_errors() {
    assert_eq!(error("FROM x\nENV PATH\n"), "Dockerfile:2: ENV must have two arguments");
    assert_eq!(
        error("FROM x\nENV a=b c\n"),
        "Dockerfile:2: Syntax error - can't find = in \"c\". Must be of the form: name=value"
    );
    assert_eq!(error("FROM x\nLABEL =x\n"), "Dockerfile:2: LABEL names can not be blank");
    assert_eq!(error("FROM x\nENV\n"), "Dockerfile:2: ENV requires at least one argument");
    assert_eq!(error("FROM x\nLABEL\n"), "Dockerfile:2: LABEL requires at least one argument");
}

#[test]
fn labels_and_maintainer() {
    let df = parse_ok(concat!(
        "FROM x\n",
        "LABEL maintainer James Turnbull \"james@example.com\"\n",
        "LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0 description=\"multi \\\n",
        "word\"\n",
        "MAINTAINER Erik \\\\Hollensbe <erik@hollensbe.org>\\\"\n",
    ));
    let s: Vec<_> = df.stages[0].steps.iter().map(|s| s.instruction.clone()).collect();
    assert_eq!(
        s,
        [
            Instruction::Label(vec![legacy("maintainer", "James Turnbull \"james@example.com\"")]),
            Instruction::Label(vec![
                kv("\"com.example.vendor\"", "\"ACME Inc\""),
                kv("version", "1.0"),
                kv("description", "\"multi word\""),
            ]),
            Instruction::Maintainer("Erik \\\\Hollensbe <erik@hollensbe.org>\\\"".into()),
        ]
    );
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].line, 5);
}

#[test]
fn args_before_and_after_from() {
    let df = parse_ok("ARG foo bar=baz\nARG  IMG=\"alpine:3\"\nFROM $IMG\nARG abc=\"123 456\" def\nARG empty=\n");
    assert_eq!(
        df.meta_args,
        [
            ArgStep {
                line: 1,
                args: vec![
                    ArgDecl { name: "foo".into(), default: None },
                    ArgDecl { name: "bar".into(), default: Some("baz".into()) }
                ]
            },
            ArgStep { line: 2, args: vec![ArgDecl { name: "IMG".into(), default: Some("\"alpine:3\"".into()) }] },
        ]
    );
    assert_eq!(
        df.stages[0].steps.iter().map(|s| s.instruction.clone()).collect::<Vec<_>>(),
        [
            Instruction::Arg(vec![
                ArgDecl { name: "abc".into(), default: Some("\"123 456\"".into()) },
                ArgDecl { name: "def".into(), default: None },
            ]),
            Instruction::Arg(vec![ArgDecl { name: "empty".into(), default: Some("".into()) }]),
        ]
    );
    assert_eq!(error("ARG =x\nFROM a\n"), "Dockerfile:1: ARG names can not be blank");
    assert_eq!(error("FROM a\nARG\n"), "Dockerfile:2: ARG requires at least one argument");
}

#[test]
fn from_forms() {
    let df = parse_ok(concat!(
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS Build-Env\n",
        "RUN make\n",
        "from scratch\n",
        "COPY --from=build-env /out /\n",
        "FROM\tbusybox:buildroot-2014.02   as   final.1\n",
    ));
    let heads: Vec<_> = df
        .stages
        .iter()
        .map(|s| (s.line, s.base.as_str(), s.name.as_deref(), s.platform.as_deref(), s.steps.len()))
        .collect();
    assert_eq!(
        heads,
        [
            (1, "golang:1.22", Some("build-env"), Some("$BUILDPLATFORM"), 1),
            (3, "scratch", None, None, 1),
            (5, "busybox:buildroot-2014.02", Some("final.1"), None, 0),
        ]
    );
    assert_eq!(df.stages[0].original, "FROM --platform=$BUILDPLATFORM golang:1.22 AS Build-Env");
    assert_eq!(error("FROM a b\n"), "Dockerfile:1: FROM requires either one or three arguments");
    assert_eq!(error("FROM a AS\n"), "Dockerfile:1: FROM requires either one or three arguments");
    assert_eq!(error("FROM a IS b\n"), "Dockerfile:1: FROM requires either one or three arguments");
    assert_eq!(
        error("FROM a AS 1st\n"),
        "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert!(error("FROM a AS my/stage\n").contains("invalid name for build stage"));
    assert_eq!(error("FROM\n"), "Dockerfile:1: FROM requires either one or three arguments");
    assert_eq!(error("FROM --arch=x a\n"), "Dockerfile:1: unknown flag: --arch");
}

#[test]
fn heredoc_basic_and_chomp() {
    let s = steps(concat!(
        "FROM x\n",
        "RUN <<EOF\n",
        "\techo hello\n",
        "echo $HOME # comment\n",
        "EOF\n",
        "RUN <<-EOT\n",
        "\t\tindented\n",
        "\tEOT\n",
        "RUN <<EMPTY\n",
        "EMPTY\n",
    ));
    let docs: Vec<_> = s.iter().map(|i| run_of(i).heredocs.clone()).collect();
    assert_eq!(
        docs,
        [
            vec![Heredoc {
                name: "EOF".into(),
                content: "\techo hello\necho $HOME # comment\n".into(),
                chomp: false,
                expand: true,
                fd: None
            }],
            vec![Heredoc { name: "EOT".into(), content: "\t\tindented\n".into(), chomp: true, expand: true, fd: None }],
            vec![Heredoc { name: "EMPTY".into(), content: "".into(), chomp: false, expand: true, fd: None }],
        ]
    );
    assert_eq!(docs[1][0].text(), "indented\n");
    assert_eq!(run_of(&s[0]).command, CommandLine::Shell("<<EOF".into()));
}

#[test]
fn heredoc_word_quoting() {
    // (announcing word, body terminator, name, expand)
    let cases = [
        ("<<'EOF'", "EOF", "EOF", false),
        ("<<\"EOF\"", "EOF", "EOF", false),
        ("<<eo'f'", "eof", "eof", false),
        ("<<eo\\'f", "eo'f", "eo'f", true),
        ("<<'e'o\\'f", "eo'f", "eo'f", false),
        ("<<'one two'", "one two", "one two", false),
        ("<<$EOF", "$EOF", "$EOF", true),
        ("<<  EOF", "EOF", "EOF", true),
        ("<<-'EOF'", "EOF", "EOF", false),
        ("<<file.txt", "file.txt", "file.txt", true),
    ];
    for (word, term, name, expand) in cases {
        let text = format!("FROM x\nRUN {} cat\nbody\n{}\nRUN after\n", word, term);
        let s = steps(&text);
        assert_eq!(s.len(), 2, "{}", word);
        let h = &run_of(&s[0]).heredocs;
        assert_eq!(h.len(), 1, "{}", word);
        assert_eq!((h[0].name.as_str(), h[0].expand, h[0].content.as_str()), (name, expand, "body\n"), "{}", word);
    }
}

#[test]
fn several_heredocs_and_terminators_inside_others() {
    let s = steps(concat!(
        "FROM x\n",
        "COPY <<FILE1 <<FILE2 /dest/\n",
        "content 1\n",
        "FILE1\n",
        "content 2\n",
        "FILE2\n",
        "COPY <<X <<Y /dest\n",
        "Y\n",
        "X\n",
        "X\n",
        "Y\n",
        "RUN 3<<A cat /dev/fd/3 && cat <<B\n",
        "aaa\n",
        "A\n",
        "bbb\n",
        "B\n",
    ));
    let c = copy_of(&s[0]);
    assert_eq!(c.sources, Vec::<String>::new());
    assert_eq!(
        c.inline,
        [
            InlineFile { name: "FILE1".into(), content: "content 1\n".into(), expand: true },
            InlineFile { name: "FILE2".into(), content: "content 2\n".into(), expand: true },
        ]
    );
    assert_eq!(c.dest, "/dest/");
    let c = copy_of(&s[1]);
    assert_eq!(
        c.inline.iter().map(|f| (f.name.as_str(), f.content.as_str())).collect::<Vec<_>>(),
        [("X", "Y\n"), ("Y", "X\n")]
    );
    let r = run_of(&s[2]);
    assert_eq!(r.heredocs.iter().map(|h| (h.name.as_str(), h.fd)).collect::<Vec<_>>(), [("A", Some(3)), ("B", None)]);
    assert_eq!(r.script(), RunScript::Shell("3<<A cat /dev/fd/3 && cat <<B\naaa\nA\nbbb\nB".into()));
}

#[test]
fn heredoc_bodies_are_not_parsed_as_lines() {
    let df = parse_ok(concat!(
        "FROM x\n",
        "RUN <<EOF\n",
        "# escape=`\n",
        "line ending in backslash \\\n",
        "FROM not-a-stage\n",
        "\n",
        "EOF\n",
        "RUN next\n",
    ));
    let steps = &df.stages[0].steps;
    assert_eq!(df.stages.len(), 1);
    assert_eq!(
        run_of(&steps[0].instruction).heredocs[0].content,
        "# escape=`\nline ending in backslash \\\nFROM not-a-stage\n\n"
    );
    assert_eq!((steps[0].line, steps[0].end_line), (2, 7));
    assert_eq!((steps[1].line, steps[1].instruction.clone()), (8, shell("next")));
}

#[test]
fn heredoc_announced_on_a_continued_line() {
    let s = steps("FROM x\nRUN --network=none \\\n  cat <<EOF > /f\nhi\nEOF\n");
    let r = run_of(&s[0]);
    assert_eq!(r.command, CommandLine::Shell("cat <<EOF > /f".into()));
    assert_eq!(r.heredocs[0].content, "hi\n");
    assert_eq!(r.network, RunNetwork::None);
}

#[test]
fn heredoc_copy_chomp_and_quotes_kept() {
    let c = one("COPY <<-EOF /quotes\n\t\"foo\"\n\t'bar' $X\n\tEOF");
    assert_eq!(
        copy_of(&c).inline,
        [InlineFile { name: "EOF".into(), content: "\"foo\"\n'bar' $X\n".into(), expand: true }]
    );
}

#[test]
fn not_heredocs() {
    // Quoted, in JSON form, or in instructions that take none.
    assert_eq!(one("RUN \"<<NOHEREDOC\""), shell("\"<<NOHEREDOC\""));
    assert_eq!(run_of(&one("RUN [\"<<EOF\"]")).heredocs, vec![]);
    assert_eq!(one("RUN echo a<<b"), shell("echo a<<b"));
    assert_eq!(one("RUN echo <<<here-string"), shell("echo <<<here-string"));
    assert_eq!(error("FROM x\nUSER <<INVALID\nINVALID\n"), "Dockerfile:3: unknown instruction: INVALID");
    // An open quote on the line: BuildKit finds no heredoc there.
    assert_eq!(one("RUN echo \"it's <<EOF"), shell("echo \"it's <<EOF"));
}

#[test]
fn heredoc_errors() {
    assert_eq!(error("FROM x\n\nRUN <<EOF\necho never ends\n"), "Dockerfile:3: unterminated heredoc");
    assert_eq!(error("FROM x\nRUN <<A <<B\nA\nB-not\n"), "Dockerfile:2: unterminated heredoc");
    assert_eq!(error("FROM x\nCOPY a <<EOF\nEOF\n"), "Dockerfile:2: COPY cannot accept a heredoc as a destination");
}

#[test]
fn run_scripts() {
    let s = steps(concat!(
        "FROM x\n",
        "RUN <<EOF\n",
        "#!/usr/bin/env python3\n",
        "print('hi')\n",
        "EOF\n",
        "RUN <<-EOF\n",
        "\techo one\n",
        "\techo two\n",
        "EOF\n",
        "RUN <<COMPLEX python3\n",
        "print('hello world')\n",
        "COMPLEX\n",
        "RUN [\"echo\", \"hi\"]\n",
        "RUN echo plain\n",
    ));
    let scripts: Vec<_> = s.iter().map(|i| run_of(i).script()).collect();
    assert_eq!(
        scripts,
        [
            RunScript::File { name: "EOF".into(), content: "#!/usr/bin/env python3\nprint('hi')\n".into() },
            RunScript::Shell("echo one\necho two\n".into()),
            RunScript::Shell("<<COMPLEX python3\nprint('hello world')\nCOMPLEX".into()),
            RunScript::Exec(strings(&["echo", "hi"])),
            RunScript::Shell("echo plain".into()),
        ]
    );
}

#[test]
fn healthcheck_forms() {
    let check = |test: &[&str]| HealthcheckConfig { test: strings(test), ..Default::default() };
    let s = steps(concat!(
        "FROM x\n",
        "HEALTHCHECK NONE\n",
        "HEALTHCHECK --interval=5s --timeout=3s --retries=3 \\\n",
        "  CMD /app/check.sh --quiet\n",
        "HEALTHCHECK   CMD   a b\n",
        "HEALTHCHECK --timeout=1m30s cmd [\"foo\", \"bar\"]\n",
        "HEALTHCHECK --start-period=0s --start-interval=1.5s --interval=5s --timeout=0s --retries=0 CMD [\"foo\"]\n",
    ));
    assert_eq!(
        s,
        [
            Instruction::Healthcheck(Healthcheck::Disable),
            Instruction::Healthcheck(Healthcheck::Check(HealthcheckConfig {
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(3),
                retries: 3,
                ..check(&["CMD-SHELL", "/app/check.sh --quiet"])
            })),
            Instruction::Healthcheck(Healthcheck::Check(check(&["CMD-SHELL", "a b"]))),
            Instruction::Healthcheck(Healthcheck::Check(HealthcheckConfig {
                timeout: Duration::from_secs(90),
                ..check(&["CMD", "foo", "bar"])
            })),
            Instruction::Healthcheck(Healthcheck::Check(HealthcheckConfig {
                interval: Duration::from_secs(5),
                start_interval: Duration::from_millis(1500),
                ..check(&["CMD", "foo"])
            })),
        ]
    );
}

#[test]
fn healthcheck_errors() {
    let cases = [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CMD []", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CONNECT TCP 7000", "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)"),
        ("HEALTHCHECK NONE extra", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK --interval=50ns CMD true", "Interval \"interval\" cannot be less than 1ms"),
        ("HEALTHCHECK --timeout=-1s CMD true", "Interval \"timeout\" cannot be less than 1ms"),
        ("HEALTHCHECK --interval=5 CMD true", "time: missing unit in duration \"5\""),
        ("HEALTHCHECK --interval=5d CMD true", "time: unknown unit \"d\" in duration \"5d\""),
        ("HEALTHCHECK --retries=-1 CMD true", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retry=1 CMD true", "unknown flag: --retry"),
    ];
    for (line, msg) in cases {
        assert_eq!(error(&format!("FROM x\n{}\n", line)), format!("Dockerfile:2: {}", msg), "{}", line);
    }
}

#[test]
fn go_durations() {
    let cases =
        [("0", 0), ("1h", 3_600_000_000_000), ("1.5s", 1_500_000_000), ("2m3s", 123_000_000_000), ("10us", 10_000)];
    for (s, n) in cases {
        assert_eq!(go_duration(s), Ok(n), "{}", s);
    }
    assert_eq!(go_duration("300µs"), Ok(300_000));
    assert_eq!(go_duration("-1ms"), Ok(-1_000_000));
    for bad in ["", "s", "1..2s", ".s", "1s2"] {
        assert!(go_duration(bad).is_err(), "{}", bad);
    }
}

#[test]
fn onbuild_wraps_an_instruction() {
    let s = steps(concat!(
        "FROM x\n",
        "ONBUILD RUN [\"echo\", \"test\"]\n",
        "onbuild   COPY --chown=1:1 . /app\n",
        "ONBUILD RUN <<EOF\n",
        "echo hi\n",
        "EOF\n",
        "ONBUILD ARG V=1\n",
    ));
    let got: Vec<(String, Instruction)> = s
        .into_iter()
        .map(|i| match i {
            Instruction::Onbuild(o) => (o.expression, *o.trigger),
            other => panic!("{:?}", other),
        })
        .collect();
    assert_eq!(
        got[0],
        (
            "RUN [\"echo\", \"test\"]".into(),
            Instruction::Run(Run { command: exec(&["echo", "test"]), heredocs: vec![], network: RunNetwork::Default })
        )
    );
    assert_eq!(got[1].0, "COPY --chown=1:1 . /app");
    assert_eq!(copy_of(&got[1].1).chown.as_deref(), Some("1:1"));
    assert_eq!(got[2].0, "RUN <<EOF\necho hi\nEOF");
    assert_eq!(run_of(&got[2].1).heredocs[0].content, "echo hi\n");
    assert_eq!(got[3].1, Instruction::Arg(vec![ArgDecl { name: "V".into(), default: Some("1".into()) }]));
}

#[test]
fn onbuild_errors() {
    let cases = [
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD ONBUILD RUN touch foobar", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM scratch", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD FOO bar", "unknown instruction: FOO (did you mean FROM?)"),
        ("ONBUILD XYZZY", "unknown instruction: XYZZY"),
        (
            "ONBUILD COPY a",
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
    ];
    for (line, msg) in cases {
        assert_eq!(error(&format!("FROM x\n{}\n", line)), format!("Dockerfile:2: {}", msg), "{}", line);
    }
}

#[test]
fn triggers_of_a_base_image() {
    let step = parse_trigger("RUN echo from the base").unwrap();
    assert_eq!(step.instruction, shell("echo from the base"));
    let step = parse_trigger("COPY <<EOF /x\nbody\nEOF").unwrap();
    assert_eq!(copy_of(&step.instruction).inline[0].content, "body\n");
    assert_eq!(parse_trigger("FROM a").unwrap_err(), "FROM isn't allowed as an ONBUILD trigger");
    assert_eq!(parse_trigger("ONBUILD RUN a").unwrap_err(), "ONBUILD isn't allowed as an ONBUILD trigger");
    assert_eq!(parse_trigger("BOGUS").unwrap_err(), "unknown instruction: BOGUS");
}

#[test]
fn metadata_instructions() {
    let s = steps(concat!(
        "FROM x\n",
        "EXPOSE 3000\n",
        "EXPOSE 9000 5000/udp\t6000-6010\n",
        "USER docker:root\n",
        "VOLUME [\"/test\", \"/test2\"]\n",
        "VOLUME /opt/a /opt/b\t/var/log\n",
        "WORKDIR /path with spaces\n",
        "STOPSIGNAL SIGKILL\n",
    ));
    assert_eq!(
        s,
        [
            Instruction::Expose(strings(&["3000"])),
            Instruction::Expose(strings(&["9000", "5000/udp", "6000-6010"])),
            Instruction::User("docker:root".into()),
            Instruction::Volume(strings(&["/test", "/test2"])),
            Instruction::Volume(strings(&["/opt/a", "/opt/b", "/var/log"])),
            Instruction::Workdir("/path with spaces".into()),
            Instruction::StopSignal("SIGKILL".into()),
        ]
    );
    for i in ["WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"] {
        assert_eq!(error(&format!("FROM x\n{}\n", i)), format!("Dockerfile:2: {} requires exactly one argument", i));
    }
    assert_eq!(error("FROM x\nEXPOSE\n"), "Dockerfile:2: EXPOSE requires at least one argument");
    assert_eq!(error("FROM x\nVOLUME []\n"), "Dockerfile:2: VOLUME requires at least one argument");
    assert_eq!(error("FROM x\nVOLUME [\"/a\", \" \"]\n"), "Dockerfile:2: VOLUME specified can not be an empty string");
}

#[test]
fn structural_errors_name_the_line() {
    assert_eq!(error("FROM x\n\n# c\nXYZZY bar\n"), "Dockerfile:4: unknown instruction: XYZZY");
    assert_eq!(error("FROM x\nfoo bar\n"), "Dockerfile:2: unknown instruction: foo (did you mean from?)");
    assert_eq!(error("FORM alpine\n"), "Dockerfile:1: unknown instruction: FORM (did you mean FROM?)");
    assert_eq!(error("FROM x\nCOPPY a b\n"), "Dockerfile:2: unknown instruction: COPPY (did you mean COPY?)");
    assert_eq!(
        error("# comment\nRUN echo hi\nFROM x\n"),
        "Dockerfile:2: no build stage in current context: RUN before the first FROM"
    );
    assert_eq!(
        error("ARG a=1\nLABEL x=y\nFROM x\n"),
        "Dockerfile:2: no build stage in current context: LABEL before the first FROM"
    );
    assert_eq!(error(""), "Dockerfile: file with no instructions");
    assert_eq!(error("\n# only\n   # comments\n\n"), "Dockerfile: file with no instructions");
    assert_eq!(error("ARG a\nARG b\n"), "Dockerfile: dockerfile contains no stages to build (no FROM)");
    let eof = "line continuation at the end of the file with no instruction";
    assert_eq!(error("FROM x\n\\"), format!("Dockerfile:2: {}", eof));
    assert_eq!(error("FROM x\nRUN a\n\\\n# comment\n\n"), format!("Dockerfile:3: {}", eof));
    // A lone escape line before an instruction just joins it.
    assert_eq!(steps("FROM x\n\\\nRUN a\n"), [shell("a")]);
    // Lines after continuations and heredocs are counted.
    assert_eq!(
        error("FROM x\nRUN a \\\n  b\nRUN <<E\n1\nE\nBAD\n"),
        "Dockerfile:7: unknown instruction: BAD (did you mean ADD?)"
    );
}

#[test]
fn stages_steps_and_lines() {
    let df = parse_ok(concat!(
        "ARG BASE=alpine\n",
        "FROM $BASE AS build\n",
        "RUN make \\\n",
        "    all\n",
        "\n",
        "FROM scratch\n",
        "COPY --from=build /out /\n",
        "CMD [\"/out\"]\n",
    ));
    assert_eq!(df.stages.len(), 2);
    let lines: Vec<Vec<(usize, usize, &str)>> = df
        .stages
        .iter()
        .map(|st| st.steps.iter().map(|s| (s.line, s.end_line, s.original.as_str())).collect())
        .collect();
    assert_eq!(
        lines,
        [vec![(3, 4, "RUN make     all")], vec![(7, 7, "COPY --from=build /out /"), (8, 8, "CMD [\"/out\"]")]]
    );
    assert_eq!(df.meta_args[0].line, 1);
}

#[test]
fn stage_lookup_helpers() {
    let df = parse_ok("FROM a AS one\nFROM b AS Two\nFROM c AS one\nFROM d\n");
    assert_eq!(df.find_stage("ONE"), Some(2));
    assert_eq!(df.find_stage("two"), Some(1));
    assert_eq!(df.find_stage("three"), None);
    assert_eq!(df.target(None), Ok(3));
    assert_eq!(df.target(Some("Two")), Ok(1));
    assert_eq!(df.target(Some("nope")), Err("target stage \"nope\" could not be found".into()));
    assert_eq!(df.copy_source(3, "two"), Ok(StageRef::Stage(1)));
    assert_eq!(df.copy_source(3, "0"), Ok(StageRef::Stage(0)));
    assert_eq!(df.copy_source(3, "alpine:3"), Ok(StageRef::Image("alpine:3".into())));
    assert_eq!(df.copy_source(1, "9"), Err("invalid stage index 9".into()));
    assert_eq!(
        df.copy_source(1, "one"),
        Err("cannot copy from stage \"one\", it needs to be defined before current stage \"two\"".into())
    );
}

#[test]
fn flag_and_word_splitting_helpers() {
    assert_eq!(
        extract_flags("--a=1 --b=\"x y\" rest of it", '\\'),
        ("rest of it".into(), strings(&["--a=1", "--b=x y"]))
    );
    assert_eq!(extract_flags("--a=\\\"q --", '\\'), ("".into(), strings(&["--a=\"q"])));
    assert_eq!(extract_flags("-- --x", '\\'), (" --x".into(), vec![]));
    assert_eq!(extract_flags("-x", '\\'), ("-x".into(), vec![]));
    assert_eq!(parse_words("a=\"1 2\" b='x y' c\\ d", '\\'), strings(&["a=\"1 2\"", "b='x y'", "c\\ d"]));
    assert_eq!(parse_words("e=\"\" f=", '\\'), strings(&["e=\"\"", "f="]));
    assert_eq!(parse_words("g=`\"h", '`'), strings(&["g=`\"h"]));
}
