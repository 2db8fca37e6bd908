"""No panicking shortcut (`.unwrap()`, `.expect(`, `panic!`, ...) on a code path Python can reach.

Every non-test Rust source under `src/` is scanned. Test code may keep them: modules gated
by `#[cfg(test)]` (an inline `mod name { ... }`, or a `mod name;` whose file is skipped
whole). Comments and string literals are ignored, so an error message or a doc comment that
mentions `unwrap()` is not an offender.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

pytestmark = pytest.mark.skipif(not SRC.is_dir(), reason="needs the Rust sources (src/)")

# What may not appear outside test code.
FORBIDDEN = [
    (r"\.\s*unwrap\s*\(\s*\)", ".unwrap()"),
    (r"\.\s*unwrap_err\s*\(\s*\)", ".unwrap_err()"),
    (r"\.\s*unwrap_unchecked\s*\(", ".unwrap_unchecked("),
    (r"\.\s*expect\s*\(", ".expect("),
    (r"\.\s*expect_err\s*\(", ".expect_err("),
    (r"\bpanic\s*!\s*[(\[{]", "panic!("),
    (r"\bunreachable\s*!\s*[(\[{]", "unreachable!("),
    (r"\btodo\s*!\s*[(\[{]", "todo!("),
    (r"\bunimplemented\s*!\s*[(\[{]", "unimplemented!("),
]
FORBIDDEN_RE = [(re.compile(pattern), name) for pattern, name in FORBIDDEN]

# `#[cfg(test)]` (other attributes may follow it), then a module item: inline or in a file.
CFG_TEST = r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]"
MOD_ITEM = CFG_TEST + r"(?:\s*#\s*\[[^\]]*\])*\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*"
INLINE_TEST_MOD = re.compile(MOD_ITEM + r"\{")
FILE_TEST_MOD = re.compile(MOD_ITEM + r";")

RAW_STRING = re.compile(r'b?r(#*)"')
CHAR_LITERAL = re.compile(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")


def blank_comments_and_strings(text: str) -> str:
    """`text` with comments and the contents of string and char literals replaced by spaces.

    Newlines are kept, so line numbers (and the lengths of lines) do not change. Braces in
    comments or literals then no longer count, and neither does a forbidden word there.
    """
    out = list(text)
    n = len(text)

    def blank(start: int, end: int) -> None:
        for j in range(start, min(end, n)):
            if out[j] != "\n":
                out[j] = " "

    i = 0
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":  # line comment, doc comments included
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif c == "/" and nxt == "*":  # block comment; they nest in Rust
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif (m := RAW_STRING.match(text, i)) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):  # raw string r"..." / r#"..."#
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            end = n if end < 0 else end + len(close)
            blank(m.end(), end - len(close))
            i = end
        elif c == '"':  # ordinary (or byte) string, with escapes
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c == "'":  # a char literal; a lifetime ('a) is left alone
            m = CHAR_LITERAL.match(text, i)
            if m:
                blank(i + 1, m.end() - 1)
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def strip_test_modules(code: str) -> str:
    """`code` (already free of comments and literals) with every inline `#[cfg(test)]`
    module blanked out, found by counting braces from its opening one. Lines are kept."""
    out = list(code)
    pos = 0
    while m := INLINE_TEST_MOD.search(code, pos):
        depth, j = 0, m.end() - 1  # at the module's `{`
        while j < len(code):
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        assert depth == 0, f"unbalanced braces after the test module at offset {m.start()}"
        for k in range(m.start(), j + 1):
            if out[k] != "\n":
                out[k] = " "
        pos = j + 1
    return "".join(out)


def module_dir(path: Path) -> Path:
    """The folder holding the files of `path`'s child modules (Rust 2018 layout)."""
    if path.name in ("mod.rs", "lib.rs", "main.rs"):
        return path.parent
    return path.with_suffix("")


def declared_test_module_files(path: Path, code: str) -> set:
    """Files (and folders) of the `#[cfg(test)] mod X;` modules that `path` declares."""
    base = module_dir(path)
    found = set()
    for m in FILE_TEST_MOD.finditer(code):
        name = m.group("name")
        found.add(base / f"{name}.rs")
        found.add(base / name)  # X/mod.rs and any child modules of X
    return found


def display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def scan(files) -> tuple:
    """(offenders as "file:line: name: source line", stripped code per scanned file)."""
    files = sorted(files)
    codes = {p: blank_comments_and_strings(p.read_text(encoding="utf-8")) for p in files}
    skipped = set()
    for p, code in codes.items():
        skipped |= declared_test_module_files(p, code)

    def is_test_file(p: Path) -> bool:
        return any(p == s or s in p.parents for s in skipped)

    offenders, stripped = [], {}
    for p, code in codes.items():
        if is_test_file(p):
            continue
        kept = strip_test_modules(code)
        stripped[p] = kept
        raw_lines = p.read_text(encoding="utf-8").splitlines()
        for lineno, line in enumerate(kept.splitlines(), start=1):
            for pattern, name in FORBIDDEN_RE:
                if pattern.search(line):
                    source = raw_lines[lineno - 1].strip() if lineno <= len(raw_lines) else ""
                    offenders.append(f"{display(p)}:{lineno}: {name}: {source}")
    return offenders, stripped


def rust_sources():
    return sorted(SRC.rglob("*.rs"))


def test_no_panicking_shortcuts_outside_tests():
    offenders, _ = scan(rust_sources())
    assert not offenders, (
        "panicking calls on a code path Python can reach (return a crate::error::Error "
        "instead):\n  " + "\n  ".join(offenders)
    )


def test_stripping_keeps_real_code_and_drops_only_tests():
    """The scan cannot pass by stripping everything: test code is known to hold unwraps,
    and what is left is real, non-empty code."""
    files = rust_sources()
    assert files, "no Rust sources found under src/"

    # The test module file `src/augvae/tests.rs` (declared `#[cfg(test)] mod tests;` in
    # src/augvae/mod.rs) holds unwraps, and the scan skips it whole.
    tests_rs = SRC / "augvae" / "tests.rs"
    assert ".unwrap()" in tests_rs.read_text(encoding="utf-8")
    _, stripped = scan(files)
    assert tests_rs not in stripped
    assert SRC / "augvae" / "mod.rs" in stripped

    # Everything else is scanned, and keeps its code.
    assert set(stripped) == set(files) - {tests_rs}
    kept = "".join(stripped.values())
    assert kept.strip() and "fn " in kept and "pub " in kept

    # Inline test modules do hold unwraps (src/tokenizer.rs has `mod tests { ... }`); they
    # are gone after stripping while the code before them stays.
    tokenizer = SRC / "tokenizer.rs"
    raw = blank_comments_and_strings(tokenizer.read_text(encoding="utf-8"))
    assert FORBIDDEN_RE[0][0].search(raw)
    assert not FORBIDDEN_RE[0][0].search(stripped[tokenizer])
    assert "impl Tokenizer" in stripped[tokenizer]


def test_scanner_on_a_known_sample(tmp_path):
    """The scanner flags an unwrap in real code, and only there."""
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    (src / "lib.rs").write_text(
        "pub mod m;\n"
        "pub fn real(x: Option<u8>) -> u8 {\n"
        "    // x.unwrap() in a comment is fine\n"
        '    let _s = "x.unwrap() in a string is fine, so is {";\n'
        "    let _c = '{';\n"
        "    x.unwrap()\n"
        "}\n"
        "#[cfg(test)]\n"
        "mod tests {\n"
        "    #[test]\n"
        "    fn t() { Some(1).unwrap(); let _ = '}'; if true { panic!(\"x\") } }\n"
        "}\n"
        "pub fn after() { todo!() }\n",
        encoding="utf-8",
    )
    (src / "m" / "mod.rs").write_text(
        "#[cfg(test)]\nmod tests;\npub fn f<'a>(s: &'a str) -> &'a str { s }\n", encoding="utf-8"
    )
    (src / "m" / "tests.rs").write_text('fn t() { None::<u8>.expect("no"); }\n', encoding="utf-8")

    offenders, stripped = scan(src.rglob("*.rs"))
    lines = sorted(o.split(": ")[0].rsplit(":", 1)[1] for o in offenders)
    assert lines == ["13", "6"], offenders
    assert src / "m" / "tests.rs" not in stripped
    assert "fn f" in stripped[src / "m" / "mod.rs"]
