//! The matcher cases of Coder's `agent/agentfiles/files_test.go` (@07cd7259) and
//! `files_indent_internal_test.go`, test for test: one module per Go test function, one test per
//! Go case, named as in Go. Go's tests go through the HTTP handler and match error substrings in
//! the older `search string` wording; these call the matcher directly and assert exact values in
//! the current `old_text` wording. Plus diff cases and property tests.
//!
//! No file IO here.

#![allow(non_snake_case)]

use super::*;

const NOT_FOUND: &str = "old_text not found in file. Verify that old_text matches the file \
                         content exactly, including whitespace and indentation";

fn e<'a>(old: &'a str, new: &'a str) -> Edit<'a> {
    Edit::new(old, new)
}

fn all<'a>(old: &'a str, new: &'a str) -> Edit<'a> {
    Edit::replace_all(old, new)
}

/// Applies the edits and returns the text.
#[track_caller]
fn ok(content: &str, edits: &[Edit<'_>]) -> String {
    match apply_edits(content.as_bytes(), edits) {
        Ok(out) => String::from_utf8(out).unwrap(),
        Err(err) => panic!("edit {} failed: {}", err.index, err.error),
    }
}

/// Applies the edits, expects a failure and returns its message.
#[track_caller]
fn fail(content: &str, edits: &[Edit<'_>]) -> String {
    match apply_edits(content.as_bytes(), edits) {
        Ok(out) => panic!("expected an error, got {:?}", String::from_utf8_lossy(&out)),
        Err(err) => err.to_string(),
    }
}

fn ambiguous(n: usize) -> String {
    MatchError::Ambiguous { count: n }.to_string()
}

fn not_found_with(hint: &str) -> String {
    format!("{NOT_FOUND}. {hint}")
}

/// `TestEditFiles`: the matcher cases of the table.
mod edit_files {
    use super::*;

    #[test]
    fn Edit1() {
        assert_eq!(ok("foo bar", &[e("foo", "bar")]), "bar bar");
    }

    #[test]
    fn EditEditAmbiguous() {
        let err = apply_edits(b"foo bar", &[e("foo", "bar"), e("bar", "qux")]).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.error, MatchError::Ambiguous { count: 2 });
        assert_eq!(
            err.to_string(),
            "old_text matches 2 occurrences (expected exactly 1). Include more surrounding \
             context to make the match unique, or set replace_all to true"
        );
    }

    #[test]
    fn EditEditReplaceAll() {
        assert_eq!(
            ok("foo bar", &[e("foo", "bar"), all("bar", "qux")]),
            "qux qux"
        );
    }

    #[test]
    fn Multiline() {
        assert_eq!(
            ok("foo\nbar\nbaz\nqux", &[e("bar\nbaz", "frob")]),
            "foo\nfrob\nqux"
        );
    }

    #[test]
    fn Multifile() {
        for n in 1..=3 {
            let content = format!("file {n}");
            let replace = format!("edited{n}");
            assert_eq!(
                ok(&content, &[e("file", &replace)]),
                format!("edited{n} {n}")
            );
        }
    }

    #[test]
    fn TrailingWhitespace() {
        assert_eq!(
            ok("foo   \nbar\t\t\nbaz", &[e("foo\nbar\nbaz", "replaced")]),
            "replaced   "
        );
    }

    #[test]
    fn TabsVsSpaces() {
        assert_eq!(
            ok(
                "\tif true {\n\t\tfoo()\n\t}",
                &[e(
                    "    if true {\n        foo()\n    }",
                    "\tif true {\n\t\tbar()\n\t}"
                )]
            ),
            "\tif true {\n\t\tbar()\n\t}"
        );
    }

    #[test]
    fn DifferentIndentDepth() {
        assert_eq!(
            ok(
                "\t\t\tdeep()\n\t\t\tnested()",
                &[e("\tdeep()\n\tnested()", "\t\t\tdeep()\n\t\t\tchanged()")]
            ),
            "\t\t\tdeep()\n\t\t\tchanged()"
        );
    }

    #[test]
    fn ExactMatchPreferred() {
        let applied =
            apply_edit_detailed(b"hello world", &e("hello world", "goodbye world")).unwrap();
        assert_eq!(applied.content, b"goodbye world");
        assert_eq!(applied.pass, Pass::Exact);
    }

    #[test]
    fn NoMatchErrors() {
        assert_eq!(
            fail(
                "original content",
                &[e("this does not exist in the file", "whatever")]
            ),
            NOT_FOUND
        );
    }

    #[test]
    fn AmbiguousExactMatch() {
        assert_eq!(
            fail("foo bar foo baz foo", &[e("foo", "qux")]),
            ambiguous(3)
        );
    }

    #[test]
    fn ReplaceAllExact() {
        let applied = apply_edit_detailed(b"foo bar foo baz foo", &all("foo", "qux")).unwrap();
        assert_eq!(applied.content, b"qux bar qux baz qux");
        assert_eq!(applied.replacements, 3);
    }

    #[test]
    fn ReplaceAllFuzzyTrailing() {
        let applied = apply_edit_detailed(
            b"hello   \nworld\nhello   \nagain",
            &all("hello\n", "bye\n"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(applied.content).unwrap(),
            "bye   \nworld\nbye   \nagain"
        );
        assert_eq!(applied.pass, Pass::TrailingWhitespace);
        assert_eq!(applied.replacements, 2);
    }

    #[test]
    fn ReplaceAllFuzzyIndent() {
        let applied = apply_edit_detailed(
            b"\t\talpha\n\t\tbeta\n\t\talpha\n\t\tgamma",
            &all("    alpha\n", "\t\tREPLACED\n"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(applied.content).unwrap(),
            "\t\tREPLACED\n\t\tbeta\n\t\tREPLACED\n\t\tgamma"
        );
        assert_eq!(applied.pass, Pass::Indentation);
    }

    #[test]
    fn MixedWhitespaceMultiline() {
        assert_eq!(
            ok(
                "func main() {\n\tresult := compute()\n\tfmt.Println(result)\n}",
                &[e(
                    "  result := compute()\n  fmt.Println(result)\n",
                    "\tresult := compute()\n\tlog.Println(result)\n"
                )]
            ),
            "func main() {\n\tresult := compute()\n\tlog.Println(result)\n}"
        );
    }

    #[test]
    fn AtomicMultiFile_OneFailsNoneWritten() {
        // The matcher part: the miss is reported, the others apply (the route writes nothing).
        assert_eq!(ok("aaa", &[e("aaa", "AAA")]), "AAA");
        assert_eq!(fail("bbb", &[e("NOTFOUND", "XXX")]), NOT_FOUND);
        assert_eq!(ok("ccc", &[e("ccc", "CCC")]), "CCC");
    }
}

/// `TestEditFiles_FileResults`: the diffs of `include_diff`.
mod edit_files_file_results {
    use super::*;

    #[test]
    fn DiffRequestedSingleFile() {
        let old = "hello world\n";
        let new = ok(old, &[e("hello", "HELLO")]);
        assert_eq!(
            unified_diff("/tmp/diff-single", old.as_bytes(), new.as_bytes()),
            "--- /tmp/diff-single\n+++ /tmp/diff-single\n@@ -1 +1 @@\n-hello world\n+HELLO world\n"
        );
    }

    #[test]
    fn DiffRequestedNoOpEdit() {
        let old = "same\n";
        let new = ok(old, &[e("same", "same")]);
        assert_eq!(
            unified_diff("/tmp/diff-noop", old.as_bytes(), new.as_bytes()),
            ""
        );
    }

    #[test]
    fn DiffRequestedMultiFilePreservesOrder() {
        for (old, search, replace) in [("A\n", "A", "a"), ("B\n", "B", "b"), ("C\n", "C", "c")] {
            let new = ok(old, &[e(search, replace)]);
            assert_eq!(
                unified_diff("/p", old.as_bytes(), new.as_bytes()),
                format!("--- /p\n+++ /p\n@@ -1 +1 @@\n-{search}\n+{replace}\n")
            );
        }
    }

    #[test]
    fn DiffRequestedMultiEditSameFile() {
        let old = "one\ntwo\nthree\n";
        let new = ok(old, &[e("one", "ONE"), e("three", "THREE")]);
        assert_eq!(new, "ONE\ntwo\nTHREE\n");
        assert_eq!(
            unified_diff("/p", old.as_bytes(), new.as_bytes()),
            "--- /p\n+++ /p\n@@ -1,3 +1,3 @@\n-one\n+ONE\n two\n-three\n+THREE\n"
        );
    }

    #[test]
    fn DiffRequestedSymlinkReportsOriginalPath() {
        // The label is whatever path the caller gave (the route passes the link path).
        let diff = unified_diff("/dir/link.txt", b"hello\n", b"HELLO\n");
        assert_eq!(
            diff,
            "--- /dir/link.txt\n+++ /dir/link.txt\n@@ -1 +1 @@\n-hello\n+HELLO\n"
        );
    }
}

/// `TestFuzzyReplace_EndingAndWhitespace`.
mod fuzzy_replace_ending_and_whitespace {
    use super::*;

    #[test]
    fn CRLF_Content_LFSearch_Delete() {
        assert_eq!(
            ok("foo\r\nline\r\nbar\r\n", &[e("line\n", "")]),
            "foo\r\nbar\r\n"
        );
    }

    #[test]
    fn TrailingWhitespace_Delete() {
        assert_eq!(ok("foo\nline   \nbar\n", &[e("line\n", "")]), "foo\nbar\n");
    }

    #[test]
    fn Pass1_SearchNoNewline_ExactSubstring() {
        assert_eq!(
            ok("foo\nfirst line\nbar\n", &[e("first line", "LINE")]),
            "foo\nLINE\nbar\n"
        );
    }

    #[test]
    fn FuzzyMatchingWhitespace_FileEndingWins() {
        assert_eq!(
            ok("foo\nkey\nbar\n", &[e("key ", "KEY ")]),
            "foo\nKEY\nbar\n"
        );
    }

    #[test]
    fn Pass1_LastLineNoNewline() {
        assert_eq!(ok("foo\nbar", &[e("bar", "BAR")]), "foo\nBAR");
    }

    #[test]
    fn FuzzyIndent_CRLF_TwoSpaceSearch_FileTabWins() {
        assert_eq!(
            ok("foo\r\n\tline\r\nbar\r\n", &[e("  line\n", "  LINE\n")]),
            "foo\r\n\tLINE\r\nbar\r\n"
        );
    }

    #[test]
    fn FuzzyIndent_CRLF_SevenSpaceSearch_FileTabStillWins() {
        assert_eq!(
            ok(
                "foo\r\n\tline\r\nbar\r\n",
                &[e("       line\n", "       LINE\n")]
            ),
            "foo\r\n\tLINE\r\nbar\r\n"
        );
    }

    #[test]
    fn FuzzyIndent_CRLF_CallerRewritesIndent_ReplaceLeadingWins() {
        assert_eq!(
            ok("foo\r\n\tline\r\nbar\r\n", &[e("  line\n", "    LINE\n")]),
            "foo\r\n    LINE\r\nbar\r\n"
        );
    }

    #[test]
    fn ReplaceAll_FuzzyMatchingWhitespace_FileEndingWins() {
        assert_eq!(
            ok("key\nkey\nother\n", &[all("key ", "KEY ")]),
            "KEY\nKEY\nother\n"
        );
    }

    #[test]
    fn ReplaceAll_CRLF_LFSearch_FileEndingWins() {
        assert_eq!(
            ok(
                "line one\r\nother\r\nline one\r\n",
                &[all("line one\n", "LINE\n")]
            ),
            "LINE\r\nother\r\nLINE\r\n"
        );
    }

    #[test]
    fn CallerChosenFold() {
        assert_eq!(
            ok("foo\nline\nbar\n", &[e("line\n", "LINE")]),
            "foo\nLINEbar\n"
        );
    }

    #[test]
    fn CallerRewritesIndent_ReplaceLeadingWins() {
        assert_eq!(
            ok("foo\n\tline\n\tbar\n", &[e("\tline\n", "  line\n")]),
            "foo\n  line\n\tbar\n"
        );
    }

    #[test]
    fn Expansion_ExtraLinesTrackLastPair() {
        assert_eq!(
            ok(
                "foo\n\tline\nbar\n",
                &[e("    line\n", "    line\n    extra\n")]
            ),
            "foo\n\tline\n\textra\nbar\n"
        );
    }

    #[test]
    fn Collapse_ReplaceShorterThanSearch() {
        assert_eq!(
            ok("foo\nkeep\ndrop\nbar\n", &[e("keep\ndrop\n", "keep\n")]),
            "foo\nkeep\nbar\n"
        );
    }

    #[test]
    fn EmptyEndingWildcard_CRLFContent_FileEndingWins() {
        assert_eq!(
            ok("foo\r\nkey\r\nbar\r\n", &[e("  key", "KEY")]),
            "foo\r\nKEY\r\nbar\r\n"
        );
    }

    #[test]
    fn MultiLineReplaceAtEOFNoNewline_InteriorLinesKeepNewline() {
        assert_eq!(
            ok("foo\nbar", &[e("foo\nbar\n", "foo\nbaz\nqux\n")]),
            "foo\nbaz\nqux"
        );
    }

    #[test]
    fn EmptyBodyFuzzyReplace_NoWhitespaceGhost() {
        assert_eq!(
            ok("prefix\n  code  \nsuffix\n", &[e("code\n", "\n")]),
            "prefix\n\nsuffix\n"
        );
    }

    #[test]
    fn EmptyBodyInteriorAtEOFNoNewline_BothCarveOuts() {
        assert_eq!(
            ok("foo\nbar", &[e("foo\nbar\n", "mid1\n\nmid2\n")]),
            "mid1\n\nmid2"
        );
    }
}

/// `TestFuzzyReplace_EndingNormalization`.
mod fuzzy_replace_ending_normalization {
    use super::*;

    #[test]
    fn CRLFFile_LFSearchReplace_Expansion() {
        assert_eq!(
            ok(
                "line1\r\nline2\r\nline3\r\n",
                &[e("line1\nline2\n", "line1\nINSERTED\nline2\n")]
            ),
            "line1\r\nINSERTED\r\nline2\r\nline3\r\n"
        );
    }

    #[test]
    fn CRLFFileNoEOL_LFSearchReplace_ExpansionAtEOF() {
        assert_eq!(
            ok(
                "alpha\r\nbeta\r\ngamma",
                &[e("gamma", "gamma\ndelta\nepsilon")]
            ),
            "alpha\r\nbeta\r\ngamma\r\ndelta\r\nepsilon"
        );
    }

    #[test]
    fn CRLFFileNoEOL_LFCallerExpandsFunctionBody() {
        assert_eq!(
            ok(
                "package main\r\n\r\nfunc main() {\r\n\tprintln(\"hi\")\r\n}",
                &[e(
                    "\tprintln(\"hi\")\n}",
                    "\tprintln(\"hi\")\n\tprintln(\"bye\")\n\treturn\n}"
                )]
            ),
            "package main\r\n\r\nfunc main() {\r\n\tprintln(\"hi\")\r\n\tprintln(\"bye\")\r\n\treturn\r\n}"
        );
    }

    #[test]
    fn LFFile_CRLFSearchReplace_FileLFWins() {
        assert_eq!(
            ok(
                "one\ntwo\nthree\n",
                &[e("one\r\ntwo\r\n", "ONE\r\nTWO\r\n")]
            ),
            "ONE\nTWO\nthree\n"
        );
    }

    #[test]
    fn CRLFFile_CRLFSearchReplace_SanityPreserved() {
        assert_eq!(
            ok("a\r\nb\r\nc\r\n", &[e("a\r\nb\r\n", "A\r\nB\r\n")]),
            "A\r\nB\r\nc\r\n"
        );
    }

    #[test]
    fn ReplaceAll_CRLFFile_LFCaller_Expansion() {
        assert_eq!(
            ok("key\r\nother\r\nkey\r\n", &[all("key\n", "KEY\nEXTRA\n")]),
            "KEY\r\nEXTRA\r\nother\r\nKEY\r\nEXTRA\r\n"
        );
    }

    #[test]
    fn CallerIntent_SearchMatchesFile_ReplaceEndingsHonored() {
        assert_eq!(
            ok("x\r\ny\r\nz\r\n", &[e("x\r\ny\r\n", "X\nY\n")]),
            "X\nY\nz\r\n"
        );
    }

    #[test]
    fn SingleLineSearch_MultiLineReplace_FileEndingWins() {
        assert_eq!(
            ok("a\r\nx\r\nb\r\n", &[e("x", "X\nY")]),
            "a\r\nX\r\nY\r\nb\r\n"
        );
    }

    #[test]
    fn SingleLineSearch_SingleLineReplace_NoEndingsToNormalize() {
        assert_eq!(ok("a\r\nx\r\nb\r\n", &[e("x", "X")]), "a\r\nX\r\nb\r\n");
    }
}

/// `TestFuzzyReplace_FuzzyCollapse_PreservesNextLine`.
mod fuzzy_replace_fuzzy_collapse_preserves_next_line {
    use super::*;

    #[test]
    fn Minimal() {
        assert_eq!(
            ok(
                "\tone\n\ttwo\n\tthree\n\tafter\n",
                &[e("    one\n    two\n    three\n", "    ONE\n    TWO\n")]
            ),
            "\tONE\n\tTWO\n\tafter\n"
        );
    }

    #[test]
    fn HarnessHttpapi() {
        let content = "\tnameValidator := func(fl validator.FieldLevel) bool {\n\
                       \t\tf := fl.Field().Interface()\n\
                       \t\tstr, ok := f.(string)\n\
                       \t\tif !ok {\n\
                       \t\t\treturn false\n\
                       \t\t}\n\
                       \t\tvalid := codersdk.NameValid(str)\n\
                       \t\treturn valid == nil\n\
                       \t}\n";
        let search = "        f := fl.Field().Interface()\n        str, ok := f.(string)\n        \
                      if !ok {\n            return false\n        }\n        valid := \
                      codersdk.NameValid(str)";
        let replace = "        f := fl.Field().Interface()\n        str, _ := f.(string)\n        \
                       valid := codersdk.NameValid(str)";
        assert_eq!(
            ok(content, &[e(search, replace)]),
            "\tnameValidator := func(fl validator.FieldLevel) bool {\n\
             \t\tf := fl.Field().Interface()\n\
             \t\tstr, _ := f.(string)\n\
             \t\tvalid := codersdk.NameValid(str)\n\
             \t\treturn valid == nil\n\
             \t}\n"
        );
    }
}

/// `TestEditFiles_WhitespaceAndLineEndings`.
mod edit_files_whitespace_and_line_endings {
    use super::*;

    #[test]
    fn TabIndentedLine_ExactMatch() {
        assert_eq!(
            ok(
                "\ttab indented line 1\n\ttab indented line 2\n    spaces line 3\n    spaces line 4\n\ttab indented line 5\n",
                &[e("\ttab indented line 1", "\ttab indented line 1 EDITED")]
            ),
            "\ttab indented line 1 EDITED\n\ttab indented line 2\n    spaces line 3\n    spaces line 4\n\ttab indented line 5\n"
        );
    }

    #[test]
    fn TrailingWhitespace_Preserved_ByPass1() {
        assert_eq!(
            ok(
                "line with trailing spaces   \nno trailing ws\n",
                &[e(
                    "line with trailing spaces",
                    "line with trailing spaces EDITED"
                )]
            ),
            "line with trailing spaces EDITED   \nno trailing ws\n"
        );
    }

    #[test]
    fn BlankLinesAreSignificant_Rejects() {
        assert_eq!(
            fail("above\n\n\nbelow\n", &[e("above\nbelow", "above\nbelow")]),
            NOT_FOUND
        );
    }

    #[test]
    fn RemoveBlankLines() {
        assert_eq!(
            ok(
                "above\n\n\nbelow\n",
                &[e("above\n\n\nbelow", "above\nbelow")]
            ),
            "above\nbelow\n"
        );
    }

    #[test]
    fn CRLF_Pass1_PreservesCRLF() {
        assert_eq!(
            ok(
                "line one\r\nline two\r\nline three\r\n",
                &[e("line two", "line two EDITED")]
            ),
            "line one\r\nline two EDITED\r\nline three\r\n"
        );
    }

    #[test]
    fn CRLF_FuzzyWithLF_FileEndingWins() {
        assert_eq!(
            ok(
                "line one\r\nline two\r\nline three\r\n",
                &[e(
                    "line one\nline two\n",
                    "line one EDITED\nline two EDITED\n"
                )]
            ),
            "line one EDITED\r\nline two EDITED\r\nline three\r\n"
        );
    }

    #[test]
    fn NoTrailingNewline_Preserved() {
        assert_eq!(
            ok(
                "no trailing newline",
                &[e("no trailing newline", "no trailing newline EDITED")]
            ),
            "no trailing newline EDITED"
        );
    }

    #[test]
    fn FuzzyIndent_FileIndentWins_NoLineFolding() {
        assert_eq!(
            ok(
                "\titem one\n\titem two\n",
                &[e("  item one\n", "  item one EDITED\n")]
            ),
            "\titem one EDITED\n\titem two\n"
        );
    }
}

/// `TestFuzzyReplace_Rejects`.
mod fuzzy_replace_rejects {
    use super::*;

    const EMPTY: &str = "old_text must not be empty; include the text you want to match";

    #[test]
    fn EmptySearch_Rejects() {
        assert_eq!(fail("hello\n", &[e("", "X")]), EMPTY);
    }

    #[test]
    fn EmptySearch_ReplaceAll_Rejects() {
        assert_eq!(fail("hello\n", &[all("", "X")]), EMPTY);
    }

    #[test]
    fn Ambiguous_SingleReplace_Rejects() {
        assert_eq!(fail("a\na\na\nother\n", &[e("a", "A")]), ambiguous(3));
    }

    #[test]
    fn NotFound_Rejects() {
        assert_eq!(
            fail("hello\nworld\n", &[e("nonexistent\n", "X\n")]),
            NOT_FOUND
        );
    }

    #[test]
    fn ContentMismatch_Rejects() {
        assert_eq!(fail("hello\n", &[e("Hello\n", "HELLO\n")]), NOT_FOUND);
    }

    #[test]
    fn BlankLineMismatch_Rejects() {
        assert_eq!(
            fail(
                "above\n\n\nbelow\n",
                &[e("above\nbelow\n", "above\nbelow\n")]
            ),
            NOT_FOUND
        );
    }

    #[test]
    fn CallerIntent_SearchDoesNotMatchFileEnding_Rejects() {
        assert_eq!(
            fail("x\r\ny\r\nz\r\n", &[e("x\ny\n", "X\r\nY\r\n")]),
            "old_text not found in file. Verify that old_text matches the file content exactly, \
             including whitespace, indentation, and line endings"
        );
    }
}

/// `TestEditFiles_DuplicatePath_Merges` / `_NonCanonicalMerges`: merged entries apply their
/// edits in request order (the route concatenates them; this is the sequential application).
mod edit_files_duplicate_path {
    use super::*;

    #[test]
    fn Merges() {
        assert_eq!(
            ok(
                "one\ntwo\nthree\n",
                &[e("one", "CHANGED"), e("CHANGED", "FINAL")]
            ),
            "FINAL\ntwo\nthree\n"
        );
    }

    #[test]
    fn NonCanonicalMerges() {
        assert_eq!(
            ok("one\ntwo\nthree\n", &[e("one", "ONE"), e("three", "THREE")]),
            "ONE\ntwo\nTHREE\n"
        );
    }
}

/// `TestEditFiles_ReplaceAll_FuzzyIndentGap`: both nesting levels are edited (kept on purpose).
#[test]
fn TestEditFiles_ReplaceAll_FuzzyIndentGap() {
    let content = "package main\n\nfunc a() {\n\t\tif err != nil {\n\t\t\treturn err\n\t\t}\n\t\t\tif \
                   err != nil {\n\t\t\t\treturn err\n\t\t\t}\n}\n";
    let search = "    if err != nil {\n        return err\n    }\n";
    let replace = "    if err != nil {\n        return fmt.Errorf(\"wrap: %w\", err)\n    }\n";
    assert_eq!(
        ok(content, &[all(search, replace)]),
        "package main\n\nfunc a() {\n\t\tif err != nil {\n\t\t\treturn fmt.Errorf(\"wrap: %w\", \
         err)\n\t\t}\n\t\t\tif err != nil {\n\t\t\t\treturn fmt.Errorf(\"wrap: %w\", \
         err)\n\t\t\t}\n}\n"
    );
}

/// `TestEditFiles_FuzzyIndent_InsertionLevelAware`.
mod edit_files_fuzzy_indent_insertion_level_aware {
    use super::*;

    #[test]
    fn Red_WrapInBlock_TabFile_4spLLM() {
        assert_eq!(
            ok(
                "func main() {\n\tfmt.Println(\"hello\")\n\tfmt.Println(\"world\")\n}\n",
                &[e(
                    "    fmt.Println(\"hello\")\n    fmt.Println(\"world\")",
                    "    fmt.Println(\"hello\")\n    if verbose {\n        fmt.Println(\"world\")\n    }"
                )]
            ),
            "func main() {\n\tfmt.Println(\"hello\")\n\tif verbose {\n\t\tfmt.Println(\"world\")\n\t}\n}\n"
        );
    }

    #[test]
    fn Red_WrapInBlock_2spFile_4spLLM() {
        assert_eq!(
            ok(
                "function main() {\n  console.log('hello')\n  console.log('world')\n}\n",
                &[e(
                    "    console.log('hello')\n    console.log('world')",
                    "    console.log('hello')\n    if (verbose) {\n        console.log('world')\n    }"
                )]
            ),
            "function main() {\n  console.log('hello')\n  if (verbose) {\n    console.log('world')\n  }\n}\n"
        );
    }

    #[test]
    fn Red_SingleToMulti_ErrorHandling() {
        assert_eq!(
            ok(
                "func main() {\n\tx := getValue()\n\tfmt.Println(x)\n}\n",
                &[e(
                    "    x := getValue()",
                    "    x, err := getValue()\n    if err != nil {\n        log.Fatal(err)\n    }"
                )]
            ),
            "func main() {\n\tx, err := getValue()\n\tif err != nil {\n\t\tlog.Fatal(err)\n\t}\n\tfmt.Println(x)\n}\n"
        );
    }

    #[test]
    fn Red_InsertNewBlock_AfterExisting() {
        let content = "func loadConfig() (*Config, error) {\n\tvar cfg Config\n\terr = \
                       json.Unmarshal(data, &cfg)\n\tif err != nil {\n\t\treturn nil, \
                       err\n\t}\n\n\treturn &cfg, nil\n}\n";
        let search = "    var cfg Config\n    err = json.Unmarshal(data, &cfg)\n    if err != nil \
                      {\n        return nil, err\n    }\n\n    return &cfg, nil";
        let replace = "    var cfg Config\n    err = json.Unmarshal(data, &cfg)\n    if err != nil \
                       {\n        return nil, fmt.Errorf(\"unmarshal: %w\", err)\n    }\n    if \
                       err := cfg.Validate(); err != nil {\n        return nil, \
                       fmt.Errorf(\"validate: %w\", err)\n    }\n\n    return &cfg, nil";
        assert_eq!(
            ok(content, &[e(search, replace)]),
            "func loadConfig() (*Config, error) {\n\tvar cfg Config\n\terr = json.Unmarshal(data, \
             &cfg)\n\tif err != nil {\n\t\treturn nil, fmt.Errorf(\"unmarshal: %w\", \
             err)\n\t}\n\tif err := cfg.Validate(); err != nil {\n\t\treturn nil, \
             fmt.Errorf(\"validate: %w\", err)\n\t}\n\n\treturn &cfg, nil\n}\n"
        );
    }

    #[test]
    fn Red_ReplaceAll_Pass3_Expansion() {
        let block = |name: &str, body: &str| {
            format!(
                "\thttp.HandleFunc(\"/{name}\", func(w http.ResponseWriter, r *http.Request) \
                 {{\n{body}\t}})\n"
            )
        };
        let before = "\t\tdata := readBody(r)\n\t\tprocess(data)\n";
        let after = "\t\tdata := readBody(r)\n\t\tif data == nil {\n\t\t\treturn\n\t\t}\n\t\tprocess(data)\n";
        let content = format!(
            "func handlers() {{\n{}{}}}\n",
            block("a", before),
            block("b", before)
        );
        let expected = format!(
            "func handlers() {{\n{}{}}}\n",
            block("a", after),
            block("b", after)
        );
        assert_eq!(
            ok(
                &content,
                &[all(
                    "        data := readBody(r)\n        process(data)",
                    "        data := readBody(r)\n        if data == nil {\n            return\n        }\n        process(data)"
                )]
            ),
            expected
        );
    }

    #[test]
    fn Lock_Unwrap_MiddleSubDisagreement() {
        assert_eq!(
            ok(
                "func main() {\n\tif condition {\n\t\tdoSomething()\n\t\tdoMore()\n\t}\n}\n",
                &[e(
                    "    if condition {\n        doSomething()\n        doMore()\n    }",
                    "    doSomething()\n    doMore()"
                )]
            ),
            "func main() {\n\tdoSomething()\n    doMore()\n}\n"
        );
    }

    #[test]
    fn Lock_MiddleRewrite_DifferentNesting_Tab() {
        let content = "func transform(items []Item) []Result {\n\tvar results []Result\n\tfor _, \
                       item := range items {\n\t\tif item.Valid {\n\t\t\tresults = \
                       append(results, convert(item))\n\t\t}\n\t}\n\treturn results\n}\n";
        let search = "    var results []Result\n    for _, item := range items {\n        if \
                      item.Valid {\n            results = append(results, convert(item))\n        \
                      }\n    }\n    return results";
        let replace = "    var results []Result\n    for _, item := range items {\n        result, \
                       err := convert(item)\n        if err != nil {\n            continue\n        \
                       }\n        results = append(results, result)\n    }\n    return results";
        assert_eq!(
            ok(content, &[e(search, replace)]),
            "func transform(items []Item) []Result {\n\tvar results []Result\n\tfor _, item := \
             range items {\n\t\tresult, err := convert(item)\n        if err != nil {\n            \
             continue\n\t\t}\n\t\tresults = append(results, result)\n\t}\n\treturn results\n}\n"
        );
    }

    #[test]
    fn Lock_MiddleRewrite_DifferentNesting_2sp() {
        let content = "function transform(items) {\n  const results = [];\n  for (const item of \
                       items) {\n    if (item.valid) {\n      results.push(convert(item));\n    \
                       }\n  }\n  return results;\n}\n";
        let search = "    const results = [];\n    for (const item of items) {\n        if \
                      (item.valid) {\n            results.push(convert(item));\n        }\n    \
                      }\n    return results;";
        let replace = "    const results = [];\n    for (const item of items) {\n        const \
                       result = convert(item);\n        if (!result) {\n            continue;\n        \
                       }\n        results.push(result);\n    }\n    return results;";
        assert_eq!(
            ok(content, &[e(search, replace)]),
            "function transform(items) {\n  const results = [];\n  for (const item of items) {\n    \
             const result = convert(item);\n        if (!result) {\n            continue;\n    \
             }\n    results.push(result);\n  }\n  return results;\n}\n"
        );
    }
}

/// `TestFuzzyReplace_Expansion_PreservesFileIndent`.
#[test]
fn TestFuzzyReplace_Expansion_PreservesFileIndent() {
    let content = "\tnameValidator := func(fl validator.FieldLevel) bool {\n\t\tf := \
                   fl.Field().Interface()\n\t\tstr, ok := f.(string)\n\t\tif !ok {\n\t\t\treturn \
                   false\n\t\t}\n\t\tvalid := codersdk.NameValid(str)\n\t\treturn valid == \
                   nil\n\t}\n";
    let search = "        f := fl.Field().Interface()\n        str, ok := f.(string)\n        if \
                  !ok {\n            return false\n        }\n        valid := \
                  codersdk.NameValid(str)";
    let replace = "        f := fl.Field().Interface()\n        str, ok := f.(string)\n        if \
                   !ok {\n            log.Println(\"type assertion failed\")\n            return \
                   false\n        }\n        valid := codersdk.NameValid(str)";
    assert_eq!(
        ok(content, &[e(search, replace)]),
        "\tnameValidator := func(fl validator.FieldLevel) bool {\n\t\tf := \
         fl.Field().Interface()\n\t\tstr, ok := f.(string)\n\t\tif !ok \
         {\n\t\t\tlog.Println(\"type assertion failed\")\n\t\t\treturn false\n\t\t}\n\t\tvalid \
         := codersdk.NameValid(str)\n\t\treturn valid == nil\n\t}\n"
    );
}

/// `TestFuzzyReplace_Hints` (the Go table's substrings, asserted here as whole messages).
mod fuzzy_replace_hints {
    use super::*;

    const LONG: &str = "matching block body of substantial length\n";
    const ABSENT: &str = "absent search line not in file at all\n";

    fn swap(lines: &str) -> String {
        not_found_with(&format!(
            "Did you swap \"old_text\" and \"new_text\"? Your new_text string appears at line {lines}"
        ))
    }

    #[test]
    fn Inversion_HintIncludesSwapAndLine() {
        let content = "package main\n\nfunc adder(a int, b int) int { return a + b }\n\n// trailing comment\n";
        assert_eq!(
            fail(
                content,
                &[e(
                    "func adder(a, b int) int {\n\treturn a + b\n}\n",
                    "func adder(a int, b int) int { return a + b }\n"
                )]
            ),
            swap("3")
        );
    }

    #[test]
    fn Inversion_ThreeAnchors_AllListed() {
        let content = format!("a\n{LONG}b\n{LONG}c\n{LONG}d\n");
        assert_eq!(
            fail(
                &content,
                &[e("this search text is absent from the file\n", LONG)]
            ),
            swap("2, 4, 6")
        );
    }

    #[test]
    fn Inversion_SevenAnchors_TruncatedWithAndMore() {
        let content = LONG.repeat(7);
        assert_eq!(
            fail(
                &content,
                &[e("this search text is absent from the file\n", LONG)]
            ),
            swap("1, 2, 3, 4, 5 and 2 more")
        );
    }

    #[test]
    fn Inversion_ShortReplace_TruncatedWithAndMore() {
        assert_eq!(
            fail(
                "alpha\nbeta\nbeta\nbeta\nbeta\nbeta\nbeta\nbeta\ngamma\n",
                &[e("missing line that does not occur anywhere\n", "beta\n")]
            ),
            swap("2, 3, 4, 5, 6 and 2 more")
        );
    }

    #[test]
    fn Miscount_BoxDrawingDashes_HintNamesCodepoint() {
        let content = format!(
            "<header>\n{{/* SECTION HEADING {} */}}\n<body/>\n",
            "─".repeat(37)
        );
        let search = format!("{{/* SECTION HEADING {} */}}\n", "─".repeat(32));
        assert_eq!(
            fail(&content, &[e(&search, "{/* REPLACED */}\n")]),
            not_found_with("Your old_text has 32 \"─\" (U+2500); the file has 37 at line 2")
        );
    }

    #[test]
    fn Miscount_ASCIIEquals_HintWorks() {
        assert_eq!(
            fail(
                "title\nsection =======\nbody\n",
                &[e("section =====\n", "section *****\n")]
            ),
            not_found_with("Your old_text has 5 \"=\" (U+003D); the file has 7 at line 2")
        );
    }

    #[test]
    fn Miscount_TwoCandidates_BothListed() {
        assert_eq!(
            fail(
                "section =======\nsection ===\n",
                &[e("section =====\n", "section *****\n")]
            ),
            not_found_with(
                "Your old_text has 5 \"=\" (U+003D); the file has 7 at line 1, 3 at line 2"
            )
        );
    }

    #[test]
    fn Miscount_SixCandidates_TruncatedWithAndMore() {
        let content = "section ==\nsection ===\nsection ======\nsection =======\nsection \
                       ========\nsection =========\n";
        assert_eq!(
            fail(content, &[e("section =====\n", "section *****\n")]),
            not_found_with(
                "Your old_text has 5 \"=\" (U+003D); the file has 2 at line 1, 3 at line 2, 6 at \
                 line 3, 7 at line 4, 8 at line 5 and 1 more"
            )
        );
    }

    #[test]
    fn Miscount_TwoDistinctChanges_NoHint() {
        assert_eq!(
            fail("first\na===b\nlast\n", &[e("a=====b!\n", "unused\n")]),
            NOT_FOUND
        );
    }

    #[test]
    fn Miscount_Unrelated_NoHint() {
        assert_eq!(
            fail(
                "package foo\n\nfunc bar() {}\n",
                &[e(
                    "this content is wholly different from the file\n",
                    "unused\n"
                )]
            ),
            NOT_FOUND
        );
    }

    #[test]
    fn Miscount_SuppressesInversion_WhenBothCouldFire() {
        let content = format!(
            "<header>\n{{/* SECTION HEADING {} */}}\n<body>\ndoSomethingWithLongName(ctx)\n</body>\n",
            "─".repeat(8)
        );
        let search = format!("{{/* SECTION HEADING {} */}}\n", "─".repeat(6));
        assert_eq!(
            fail(&content, &[e(&search, "doSomethingWithLongName(ctx)\n")]),
            not_found_with("Your old_text has 6 \"─\" (U+2500); the file has 8 at line 2")
        );
    }

    #[test]
    fn Inversion_DedupRepeatsOnOneLine() {
        let a20 = "A".repeat(20);
        let content = format!("prefix\n{a20} {a20} {a20}\nsuffix\n");
        assert_eq!(fail(&content, &[e(ABSENT, &format!("{a20}\n"))]), swap("2"));
    }

    #[test]
    fn Inversion_TrimRightFallback_TrailingSpaces() {
        let content = "preamble\nmatching block body of substantial length   \ntrailer\n";
        assert_eq!(fail(content, &[e(ABSENT, LONG)]), swap("2"));
    }

    #[test]
    fn Inversion_TrimAllFallback_LeadingIndent() {
        let content = "preamble\n\t\tmatching block body of substantial length\ntrailer\n";
        assert_eq!(fail(content, &[e(ABSENT, LONG)]), swap("2"));
    }

    #[test]
    fn Miscount_SingleRuneDiff_Suppressed() {
        assert_eq!(
            fail("first\nxa\nlast\n", &[e("xab\n", "unused\n")]),
            NOT_FOUND
        );
    }

    #[test]
    fn Miscount_TotalHintsCapped() {
        assert_eq!(
            fail(
                "section ==\ndivider ++\nline ##\nheader @@\n",
                &[e(
                    "section ====\ndivider ++++\nline ####\nheader @@@@\n",
                    "unused\n"
                )]
            ),
            not_found_with(
                "Your old_text has 4 \"=\" (U+003D); the file has 2 at line 1. Your old_text has \
                 4 \"+\" (U+002B); the file has 2 at line 2. Your old_text has 4 \"#\" (U+0023); \
                 the file has 2 at line 3. and 1 more"
            )
        );
    }

    #[test]
    fn Inversion_OverlappingMultilineMatch() {
        let (a, b) = ("A".repeat(20), "B".repeat(20));
        let content = format!("{a}\n{b}\n{a}\n{b}\n{a}\n");
        assert_eq!(
            fail(&content, &[e(ABSENT, &format!("{a}\n{b}\n{a}\n"))]),
            swap("1, 3")
        );
    }

    #[test]
    fn Miscount_RuneOnlyInFile() {
        assert_eq!(
            fail("section ==bb\n", &[e("section ==\n", "section --\n")]),
            not_found_with("Your old_text has 0 \"b\" (U+0062); the file has 2 at line 1")
        );
    }

    #[test]
    fn NoHints_BaseErrorOnly() {
        assert_eq!(
            fail(
                "package foo\n\nfunc bar() {}\n",
                &[e("func zzzz() {}\n", "new\n")]
            ),
            NOT_FOUND
        );
    }
}

/// `files_indent_internal_test.go`.
mod indent_internal {
    use super::super::splice::{
        IndentUnit, detect_indent_unit, indent_gcd, indent_level, translate_indent_level,
    };

    fn unit(s: &str) -> IndentUnit {
        if s == "\t" {
            IndentUnit::Tab
        } else {
            IndentUnit::Spaces(s.len())
        }
    }

    fn detect(lines: &[&str]) -> Option<IndentUnit> {
        detect_indent_unit(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn TestDetectIndentUnit() {
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("Empty", &[], None),
            ("NoIndent", &["foo\n", "bar\n"], None),
            ("TabOnly", &["\tfoo\n", "\t\tbar\n"], Some("\t")),
            (
                "FourSpaceUniform",
                &["    foo\n", "        bar\n"],
                Some("    "),
            ),
            ("TwoSpaceUniform", &["  foo\n", "    bar\n"], Some("  ")),
            (
                "GCDReducesFourAndSixToTwo",
                &["    foo\n", "      bar\n"],
                Some("  "),
            ),
            (
                "MixedAcrossLinesTabAndSpace",
                &["\tfoo\n", "    bar\n"],
                None,
            ),
            ("MixedWithinLeadTabThenSpace", &["\t    foo\n"], None),
            ("MixedWithinLeadSpaceThenTab", &[" \tfoo\n"], None),
            (
                "WhitespaceOnlyLineSkipped",
                &["    foo\n", "  \n", "    bar\n"],
                Some("    "),
            ),
            ("OnlyWhitespaceOnlyLines", &["  \n", "    \n"], None),
            ("BlankLineIgnored", &["\n", "    foo\n"], Some("    ")),
        ];
        for (name, lines, want) in cases {
            assert_eq!(detect(lines), want.map(unit), "{name}");
        }
    }

    #[test]
    fn TestIndentGCD() {
        for (name, a, b, want) in [
            ("BothZero", 0, 0, 0),
            ("AZero", 0, 4, 4),
            ("BZero", 4, 0, 4),
            ("Equal", 4, 4, 4),
            ("Coprime", 3, 5, 1),
            ("CommonFactorTwo", 4, 6, 2),
            ("CommonFactorFour", 8, 12, 4),
            ("TwoSpaceAndFourSpace", 2, 4, 2),
        ] {
            assert_eq!(indent_gcd(a, b), want, "{name}");
        }
    }

    #[test]
    fn TestIndentLevel() {
        for (name, lead, u, want) in [
            ("EmptyLead", "", "    ", Some(0)),
            ("CleanMultipleOne", "    ", "    ", Some(1)),
            ("CleanMultipleThreeTwoSp", "      ", "  ", Some(3)),
            ("CleanMultipleTwoTab", "\t\t", "\t", Some(2)),
            ("NonMultipleLength", "   ", "    ", None),
            ("LengthDividesButCompositionMismatches", "\t ", "  ", None),
        ] {
            assert_eq!(indent_level(lead.as_bytes(), unit(u)), want, "{name}");
        }
    }

    #[test]
    fn TestTranslateIndentLevel() {
        for (name, r, s, c, su, fu, want) in [
            (
                "PositiveDeltaWrap",
                "        ",
                "    ",
                "\t",
                "    ",
                "\t",
                Some("\t\t"),
            ),
            (
                "ZeroDeltaSameLevel",
                "    ",
                "    ",
                "\t",
                "    ",
                "\t",
                Some("\t"),
            ),
            (
                "NegativeDeltaBelowFileBase",
                "",
                "        ",
                "\t",
                "    ",
                "\t",
                None,
            ),
            ("MalformedRLead", "   ", "    ", "\t", "    ", "\t", None),
            (
                "CrossStyle4spTo2sp",
                "        ",
                "    ",
                "    ",
                "    ",
                "  ",
                Some("      "),
            ),
            (
                "CrossStyle2spToTab",
                "    ",
                "  ",
                "\t",
                "  ",
                "\t",
                Some("\t\t"),
            ),
        ] {
            let got = translate_indent_level(
                r.as_bytes(),
                s.as_bytes(),
                c.as_bytes(),
                unit(su),
                unit(fu),
            );
            assert_eq!(got, want.map(|w| w.as_bytes().to_vec()), "{name}");
        }
    }
}

/// Behaviour beyond Coder's tables: bytes that are not UTF-8, whitespace classes, the exact
/// output of the diff in the less common shapes, and the bounds.
mod extra {
    use super::*;

    #[test]
    fn non_utf8_content_is_edited_around() {
        let content = b"caf\xe9\nline two\n\xff\xfe end\n";
        let out = apply_edit(content, &e("line two", "LINE 2")).unwrap();
        assert_eq!(out, b"caf\xe9\nLINE 2\n\xff\xfe end\n");
        // A fuzzy pass over invalid bytes (they are never white space).
        let out = apply_edit(content, &e("  line two\n", "  LINE 2\n")).unwrap();
        assert_eq!(out, b"caf\xe9\nLINE 2\n\xff\xfe end\n");
    }

    #[test]
    fn nbsp_is_white_space_and_bom_is_not() {
        // Go's TrimSpace (unicode.IsSpace) trims U+00A0, so pass 3 matches; the splice's lead is
        // spaces and tabs only, so the NBSP lead is not the file's lead and is lost (as in Go).
        assert_eq!(
            ok("\u{a0}\u{a0}x = 1\n", &[e("  x = 1\n", "  x = 2\n")]),
            "x = 2\n"
        );
        // U+FEFF is no white space: no match.
        assert_eq!(
            fail("\u{feff}x = 1\n", &[e(" x = 1\n", " x = 2\n")]),
            NOT_FOUND
        );
    }

    #[test]
    fn ambiguous_fuzzy_match_counts_windows() {
        assert_eq!(
            fail("\tfoo\n\tbar\n  foo\n", &[e("    foo\n", "x\n")]),
            ambiguous(2)
        );
    }

    #[test]
    fn empty_file() {
        assert_eq!(fail("", &[e("x", "y")]), NOT_FOUND);
        assert_eq!(
            unified_diff("/f", b"", b"a\n"),
            "--- /f\n+++ /f\n@@ -0,0 +1 @@\n+a\n"
        );
        assert_eq!(
            unified_diff("/f", b"a\nb\n", b""),
            "--- /f\n+++ /f\n@@ -1,2 +0,0 @@\n-a\n-b\n"
        );
    }

    #[test]
    fn diff_no_newline_at_eof() {
        assert_eq!(
            unified_diff("/f", b"a\nb", b"a\nc"),
            "--- /f\n+++ /f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No \
             newline at end of file\n"
        );
        assert_eq!(
            unified_diff("/f", b"a", b"a\n"),
            "--- /f\n+++ /f\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"
        );
    }

    fn numbered(edit: impl Fn(usize) -> Vec<String>) -> String {
        (1..=20).flat_map(edit).map(|l| l + "\n").collect()
    }

    #[test]
    fn diff_context_and_hunks() {
        let old = numbered(|i| vec![i.to_string()]);
        // Changes at 2 and 9 (6 equal lines between: one hunk), and at 18 (its own hunk; its
        // new-file start is 16, where go-udiff would print 10, golang/go#81453).
        let new = numbered(|i| match i {
            2 => vec!["two".into()],
            9 => vec!["nine".into(), "nine b".into()],
            18 => vec![],
            _ => vec![i.to_string()],
        });
        assert_eq!(
            unified_diff("/f", old.as_bytes(), new.as_bytes()),
            "--- /f\n+++ /f\n@@ -1,12 +1,13 @@\n 1\n-2\n+two\n 3\n 4\n 5\n 6\n 7\n 8\n-9\n+nine\n+nine \
             b\n 10\n 11\n 12\n@@ -15,6 +16,5 @@\n 15\n 16\n 17\n-18\n 19\n 20\n"
        );
        // Seven equal lines between two changes: two hunks.
        let new = numbered(|i| match i {
            2 => vec!["two".into()],
            10 => vec!["ten".into()],
            _ => vec![i.to_string()],
        });
        assert_eq!(
            unified_diff("/f", old.as_bytes(), new.as_bytes()),
            "--- /f\n+++ /f\n@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n@@ -7,7 +7,7 @@\n 7\n 8\n 9\n-10\n+ten\n \
             11\n 12\n 13\n"
        );
    }

    #[test]
    fn diff_ambiguous_insertions_go_after_equal_runs() {
        assert_eq!(
            unified_diff("/f", b"a\nb\n", b"a\nb\nb\n"),
            "--- /f\n+++ /f\n@@ -1,2 +1,3 @@\n a\n b\n+b\n"
        );
    }

    #[test]
    fn diff_of_unrelated_files_is_minimal() {
        let old = "a\nb\nc\nd\ne\n";
        let new = "x\nb\ny\nd\nz\n";
        assert_eq!(
            unified_diff("/f", old.as_bytes(), new.as_bytes()),
            "--- /f\n+++ /f\n@@ -1,5 +1,5 @@\n-a\n+x\n b\n-c\n+y\n d\n-e\n+z\n"
        );
    }

    #[test]
    fn diff_budget_exhausted_still_correct() {
        let a: Vec<&[u8]> = vec![b"1\n", b"2\n", b"3\n", b"4\n"];
        let b: Vec<&[u8]> = vec![b"2\n", b"5\n", b"4\n", b"1\n"];
        // No budget: the middle is one replacement.
        let changes = diff::diff_lines(&a, &b, 0);
        assert_eq!(
            changes,
            vec![diff::Change {
                a0: 0,
                a1: 4,
                b0: 0,
                b1: 4
            }]
        );
        let changes = diff::diff_lines(&a, &b, 1_000);
        assert_eq!(
            changes
                .iter()
                .map(|c| (c.a1 - c.a0) + (c.b1 - c.b0))
                .sum::<usize>(),
            4
        );
    }

    #[test]
    fn diff_of_large_unrelated_inputs_is_bounded_and_correct() {
        // 20k lines against their reverse: D is about 40k, far beyond the search budget, so
        // part of the middle becomes one replacement; the diff must stay a correct diff.
        let old: String = (0..20_000).map(|i| format!("{i}\n")).collect();
        let new: String = (0..20_000).rev().map(|i| format!("{i}\n")).collect();
        let started = std::time::Instant::now();
        let diff = unified_diff("/f", old.as_bytes(), new.as_bytes());
        eprintln!("20k-line reversed diff: {:?}", started.elapsed());
        assert_eq!(props::apply_unified(&old, &diff), new);
    }

    #[test]
    fn diff_of_scattered_edits_in_a_large_file() {
        // replace_all over 30k lines touching every 10th one: a few hundred hunks, each minimal.
        let old: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
        let new: String = (0..30_000)
            .map(|i| {
                if i % 10 == 5 {
                    format!("LINE {i}\n")
                } else {
                    format!("line {i}\n")
                }
            })
            .collect();
        let started = std::time::Instant::now();
        let diff = unified_diff("/f", old.as_bytes(), new.as_bytes());
        eprintln!("30k-line scattered diff: {:?}", started.elapsed());
        assert_eq!(props::apply_unified(&old, &diff), new);
        assert_eq!(
            diff.lines().filter(|l| l.starts_with("-line ")).count(),
            3_000
        );
        assert_eq!(
            diff.lines().filter(|l| l.starts_with("+LINE ")).count(),
            3_000
        );
    }

    #[test]
    fn diff_output_replaces_invalid_utf8() {
        assert_eq!(
            unified_diff("/f", b"caf\xe9\n", b"cafe\n"),
            "--- /f\n+++ /f\n@@ -1 +1 @@\n-caf\u{fffd}\n+cafe\n"
        );
    }

    /// Median wall time of `f` over `runs` calls.
    fn median(runs: usize, mut f: impl FnMut()) -> std::time::Duration {
        let mut times: Vec<_> = (0..runs)
            .map(|_| {
                let started = std::time::Instant::now();
                f();
                started.elapsed()
            })
            .collect();
        times.sort();
        times[runs / 2]
    }

    #[test]
    fn large_file_timings() {
        // 100 KiB, one edit in the middle; timings are printed for a human eye, never asserted.
        let mut content = String::new();
        let mut i = 0;
        while content.len() < 100 * 1024 {
            content.push_str(&format!("    let value_{i} = compute({i});\n"));
            i += 1;
        }
        let exact = e(
            "let value_1500 = compute(1500);",
            "let value_1500 = compute(1501);",
        );
        let applied = apply_edit_detailed(content.as_bytes(), &exact).unwrap();
        assert_eq!(applied.pass, Pass::Exact);
        assert_eq!(applied.content.len(), content.len());
        let indent = e(
            "\tlet value_1500 = compute(1500);\n",
            "\tlet value_1500 = compute(1501);\n",
        );
        let fuzzy = apply_edit_detailed(content.as_bytes(), &indent).unwrap();
        assert_eq!(fuzzy.pass, Pass::Indentation);
        assert_eq!(fuzzy.content, applied.content);
        let diff = unified_diff("/f", content.as_bytes(), &applied.content);
        assert_eq!(
            diff.lines()
                .filter(|l| l.starts_with('-') || l.starts_with('+'))
                .count(),
            4
        );
        let miss = e("let value_1500 = compute(9999);\nnope\n", "x\n");
        assert!(matches!(
            apply_edit(content.as_bytes(), &miss),
            Err(MatchError::NotFound { .. })
        ));

        let bytes = content.as_bytes();
        eprintln!(
            "100 KiB medians: exact {:?}, indentation pass {:?}, diff {:?}, miss with hints {:?}",
            median(51, || drop(apply_edit(bytes, &exact))),
            median(51, || drop(apply_edit(bytes, &indent))),
            median(51, || drop(unified_diff("/f", bytes, &applied.content))),
            median(11, || drop(apply_edit(bytes, &miss))),
        );
    }
}

/// Properties.
mod props {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof!["[a-c ]{0,6}", Just(String::new())], 0..12)
            .prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        /// Exact pass: a unique substring is replaced like `str::replacen`.
        #[test]
        fn exact_unique_is_replacen(prefix in "[a-z\n]{0,40}", needle in "[XYZ]{1,5}", suffix in "[a-z\n]{0,40}", replace in "[a-z\n]{0,10}") {
            let content = format!("{prefix}{needle}{suffix}");
            let out = apply_edit(content.as_bytes(), &e(&needle, &replace)).unwrap();
            // `replace` may have internal LF endings; the file is LF (or ending-less), so no
            // ending rewrite happens.
            prop_assert_eq!(String::from_utf8(out).unwrap(), content.replacen(&needle, &replace, 1));
        }

        /// CRLF in, CRLF out: an LF edit of a CRLF file never introduces a bare LF.
        #[test]
        fn crlf_stays_crlf(lines in proptest::collection::vec("[a-d]{1,5}", 3..10), pick in 0usize..2, replacement in proptest::collection::vec("[x-z]{1,4}", 1..4), indent in "[ \t]{0,3}") {
            let content: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            let search = format!("{indent}{}\n{indent}{}\n", lines[pick], lines[pick + 1]);
            let replace: String = replacement.iter().map(|r| format!("{indent}{r}\n")).collect();
            let edit = Edit { old_text: &search, new_text: &replace, replace_all: true };
            if let Ok(out) = apply_edit(content.as_bytes(), &edit) {
                let out = String::from_utf8(out).unwrap();
                prop_assert_eq!(out.matches('\n').count(), out.matches("\r\n").count(), "{:?}", out);
            }
        }

        /// The diff never panics, is empty only for equal inputs, and applying its +/- lines
        /// to the old side reproduces the new side.
        #[test]
        fn diff_round_trips(old in text(), new in text()) {
            let diff = unified_diff("/f", old.as_bytes(), new.as_bytes());
            prop_assert_eq!(diff.is_empty(), old == new);
            if !diff.is_empty() {
                prop_assert_eq!(apply_unified(&old, &diff), new);
            }
        }

        /// Matching never panics on arbitrary input.
        #[test]
        fn never_panics(content in text(), search in text(), replace in text(), replace_all in any::<bool>()) {
            let _ = apply_edit(content.as_bytes(), &Edit { old_text: &search, new_text: &replace, replace_all });
        }
    }

    fn naive_windows(content: &[&[u8]], search: &[&[u8]], overlapping: bool) -> Vec<usize> {
        let mut out = Vec::new();
        let mut i = 0;
        while !search.is_empty() && i + search.len() <= content.len() {
            if content[i..i + search.len()] == *search {
                out.push(i);
                if !overlapping {
                    i += search.len();
                    continue;
                }
            }
            i += 1;
        }
        out
    }

    proptest! {
        /// The KMP window search finds what Coder's naive scan finds, in both modes.
        #[test]
        fn kmp_windows_equal_naive_scan(content in proptest::collection::vec("[ab]", 0..40), search in proptest::collection::vec("[ab]", 1..5)) {
            let content: Vec<&[u8]> = content.iter().map(|s| s.as_bytes()).collect();
            let search: Vec<&[u8]> = search.iter().map(|s| s.as_bytes()).collect();
            prop_assert_eq!(lines::find_windows(&content, &search), naive_windows(&content, &search, false));
            prop_assert_eq!(lines::find_windows_overlapping(&content, &search), naive_windows(&content, &search, true));
        }
    }

    /// A minimal unified-diff applier for the round-trip property.
    pub(super) fn apply_unified(old: &str, diff: &str) -> String {
        let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
        let mut out = String::new();
        let mut next_old = 0usize;
        let lines = diff.split_inclusive('\n').skip(2);
        let mut last_pushed_new = false;
        for line in lines {
            if let Some(header) = line.strip_prefix("@@ -") {
                let from: usize = header.split([',', ' ']).next().unwrap().parse().unwrap();
                let start = from.saturating_sub(1);
                while next_old < start {
                    out.push_str(old_lines[next_old]);
                    next_old += 1;
                }
                continue;
            }
            if line.starts_with("\\ No newline") {
                if last_pushed_new {
                    out.pop();
                }
                continue;
            }
            let (tag, body) = line.split_at(1);
            last_pushed_new = false;
            match tag {
                " " => {
                    out.push_str(body);
                    next_old += 1;
                    last_pushed_new = true;
                }
                "-" => next_old += 1,
                "+" => {
                    out.push_str(body);
                    last_pushed_new = true;
                }
                _ => panic!("bad diff line {line:?}"),
            }
        }
        while next_old < old_lines.len() {
            out.push_str(old_lines[next_old]);
            next_old += 1;
        }
        out
    }
}
