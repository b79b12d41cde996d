//! The architecture as a test (`docs/architecture.md`): it fails when a forbidden dependency
//! or import comes back.
//!
//! - Crate graph (`cargo tree`): the format core pulls in no FUSE, GPU, async runtime or
//!   HTTP stack; `fuser` is a direct dependency of `fuse-decrypt` only and `cudarc` of
//!   `gpu-loader` only; `attest` and the format core never depend on each other.
//! - Module graph: the format core's modules import only lower layers (the table below),
//!   and no core file names a frontend; the agent's modules form no cycle.
//! - Library strings: no string literal in a library crate names a CLI flag (`--force`) or
//!   a `ccmount` command: libraries state the problem, `agent/src/exit.rs` gives the fix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    e2e::tests_dir().join("..")
}

fn cargo_tree(args: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_format_core_has_no_frontend_runtime_or_network_dependencies() {
    let deps = cargo_tree(&["-p", "gocryptfs-format"]);
    for banned in [
        "fuser",
        "cudarc",
        "tokio",
        "reqwest",
        "hyper",
        "attest",
        "fuse-decrypt",
        "gpu-loader",
    ] {
        assert!(
            !deps.contains(banned),
            "gocryptfs-format depends on {banned}: {deps:?}"
        );
    }
    let attest = cargo_tree(&["-p", "attest"]);
    assert!(!attest.contains("gocryptfs-format"), "attest → format core");
    for (frontend, banned) in [
        ("fuse-decrypt", ["cudarc", "tokio", "reqwest"]),
        ("gpu-loader", ["fuser", "tokio", "reqwest"]),
    ] {
        let deps = cargo_tree(&["-p", frontend]);
        for b in banned {
            assert!(!deps.contains(b), "{frontend} depends on {b}");
        }
    }
}

#[test]
fn fuser_and_cudarc_belong_to_their_frontends() {
    for (dep, owner) in [("fuser", "fuse-decrypt"), ("cudarc", "gpu-loader")] {
        let users: BTreeSet<String> =
            cargo_tree(&["--workspace", "--all-features", "-i", dep, "--depth", "1"])
                .into_iter()
                .filter(|n| n != dep)
                .collect();
        assert_eq!(
            users,
            BTreeSet::from([owner.to_owned()]),
            "{dep} is a direct dependency of {users:?}"
        );
    }
}

/// Rust source with comments removed and string literals reported separately, plus the
/// code outside `#[cfg(test)]` test modules.
struct Scanned {
    code: String,
    strings: Vec<(usize, String)>,
}

/// A small lexer: enough of Rust to tell code, comments, string and char literals apart.
fn scan(src: &str) -> Scanned {
    // Test modules are at the end of a file by convention here; drop them.
    let src = match src.find("#[cfg(test)]\nmod ") {
        Some(i) => &src[..i],
        None => src,
    };
    let b = src.as_bytes();
    let (mut code, mut strings) = (String::new(), Vec::new());
    let mut i = 0;
    let line_of = |i: usize| src[..i].matches('\n').count() + 1;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let start = i;
                i += 1;
                let mut hashes = 0;
                while b.get(i) == Some(&b'#') {
                    hashes += 1;
                    i += 1;
                }
                if b.get(i) != Some(&b'"') {
                    code.push_str(&src[start..i]);
                    continue;
                }
                i += 1;
                let body = i;
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let end = src[i..].find(&close).map_or(b.len(), |e| i + e);
                strings.push((line_of(start), src[body..end].to_owned()));
                i = end + close.len();
            }
            b'"' => {
                let start = i;
                i += 1;
                let mut s = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        // An escape; a line continuation joins lines.
                        if b.get(i + 1) == Some(&b'\n') {
                            i += 2;
                            while i < b.len() && b[i].is_ascii_whitespace() {
                                i += 1;
                            }
                            continue;
                        }
                        s.push(b[i + 1] as char);
                        i += 2;
                        continue;
                    }
                    let ch = src[i..].chars().next().unwrap_or(' ');
                    s.push(ch);
                    i += ch.len_utf8();
                }
                strings.push((line_of(start), s));
                i += 1;
            }
            b'\'' => {
                // A char literal ('"', '\'', 'x') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    let end = src[i + 2..].find('\'').map_or(b.len(), |e| i + 2 + e);
                    i = end + 1;
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else {
                    code.push('\'');
                    i += 1;
                }
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or(' ');
                code.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Scanned { code, strings }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Top-level module of a source file (`verify/keyed.rs` → `verify`).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// `crate::x` references of a file's code, as top-level module names.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    refs.insert(name.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            refs.insert(name);
        }
    }
    refs
}

/// Module → the modules it imports, for one crate's `src/`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in rust_files(src) {
        let top = top_module(src, &f);
        if top == "lib" || top == "main" {
            continue;
        }
        let s = scan(&std::fs::read_to_string(&f).unwrap());
        let mut refs = crate_refs(&s.code);
        refs.remove(&top);
        g.entry(top).or_default().extend(refs);
    }
    g
}

#[test]
fn format_core_modules_import_only_lower_layers() {
    // Lowest first: a module may import modules of a lower rank only (style-anchors §7.2).
    let ranks: BTreeMap<&str, u32> = BTreeMap::from([
        ("escape", 0),
        ("error", 1),
        ("safeio", 2),
        ("cryptocore", 2),
        ("contentenc", 3),
        ("configfile", 4),
        ("nametransform", 5),
        ("policy", 5),
        ("reader", 5),
        ("listing", 6),
        ("cipherdir", 7),
        ("walk", 8),
        ("verify", 9),
        ("manifest", 10),
        ("decrypt", 11),
        ("writer", 11),
        ("internal", 12),
    ]);
    let src = workspace().join("gocryptfs-format/src");
    let graph = module_graph(&src);
    for (module, deps) in &graph {
        let Some(&rank) = ranks.get(module.as_str()) else {
            panic!("gocryptfs-format module {module} has no layer in this test: add it");
        };
        for d in deps {
            // Items re-exported at the crate root (`crate::Progress`) are leaf types.
            let Some(&dr) = ranks.get(d.as_str()) else {
                continue;
            };
            assert!(
                dr < rank,
                "gocryptfs-format: {module} (layer {rank}) imports {d} (layer {dr})"
            );
        }
    }
    for f in rust_files(&src) {
        let code = scan(&std::fs::read_to_string(&f).unwrap()).code;
        for frontend in [
            "fuser",
            "cudarc",
            "tokio",
            "fuse_decrypt",
            "gpu_loader",
            "attest",
        ] {
            assert!(
                !code.contains(&format!("{frontend}::")),
                "{} names {frontend}",
                f.display()
            );
        }
    }
}

/// Cycles among the modules of `graph` (each as a sorted list of members).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components, iteratively simple enough for ~20 nodes.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(n) = stack.pop() {
            for d in graph.get(&n).into_iter().flatten() {
                if graph.contains_key(d) && seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    };
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if done.contains(n) {
            continue;
        }
        let from_n = reach(n);
        if !from_n.contains(n) {
            continue;
        }
        let scc: Vec<String> = from_n
            .iter()
            .filter(|m| reach(m).contains(n))
            .cloned()
            .collect();
        done.extend(scc.iter().cloned());
        out.push(scc);
    }
    out
}

#[test]
fn no_import_cycles_in_any_crate() {
    for krate in [
        "gocryptfs-format",
        "fuse-decrypt",
        "gpu-loader",
        "attest",
        "agent",
    ] {
        let graph = module_graph(&workspace().join(krate).join("src"));
        let found = cycles(&graph);
        assert!(found.is_empty(), "{krate}: import cycles {found:?}");
    }
    // The test itself: a planted cycle is found.
    let g = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycles(&g), [vec!["a".to_owned(), "b".to_owned()]]);
}

/// A CLI flag (`--force`) or a `ccmount` subcommand inside a string.
fn names_cli(s: &str) -> bool {
    let flag = s.match_indices("--").any(|(i, _)| {
        let before = s[..i].chars().last();
        let after = s[i + 2..].chars().next();
        before.is_none_or(|c| c.is_whitespace() || "(`'\"[".contains(c))
            && after.is_some_and(|c| c.is_ascii_lowercase())
    });
    let command = s.contains("ccmount ")
        && [
            "umount", "mount", "verify", "decrypt", "encrypt", "manifest", "info", "secrets",
            "attest", "load-gpu",
        ]
        .iter()
        .any(|c| s.contains(&format!("ccmount {c}")));
    flag || command
}

#[test]
fn library_strings_name_no_cli_flag() {
    assert!(names_cli("pass --force to write"));
    assert!(names_cli("run `ccmount umount --lazy`"));
    assert!(!names_cli("a -- b, x--y, --"));
    // Positive control: the agent's hints are found by the same scanner.
    let hints = scan(&std::fs::read_to_string(workspace().join("agent/src/exit.rs")).unwrap());
    assert!(hints.strings.iter().any(|(_, s)| names_cli(s)));
    let mut bad = Vec::new();
    let mut seen = 0;
    for krate in [
        "gocryptfs-format",
        "fuse-decrypt",
        "gpu-loader",
        "attest",
        "s3-source",
    ] {
        for f in rust_files(&workspace().join(krate).join("src")) {
            let s = scan(&std::fs::read_to_string(&f).unwrap());
            seen += s.strings.len();
            for (line, lit) in s.strings {
                if names_cli(&lit) {
                    bad.push(format!("{}:{line}: {lit:?}", f.display()));
                }
            }
        }
    }
    assert!(seen > 300, "the scanner found only {seen} string literals");
    assert!(
        bad.is_empty(),
        "library strings that name CLI flags or commands (move the fix to agent/src/exit.rs):\n{}",
        bad.join("\n")
    );
}
