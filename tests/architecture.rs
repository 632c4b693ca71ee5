//! The core crate's dependency rules, checked on its source (`shared/src/`) read as text.
//!
//! - Layers: `shared/src/lib.rs` lists its top-level modules in layers (its `# Layers` section); a module uses
//!   only modules of the layers below its own.
//! - No cycles: no two sibling modules (`store::turns` and `store::tool_calls`; `http` and `store`) use each other,
//!   directly or round a longer circle. The bench (`bench/src/`) and the test kit (`testkit/src/`) are held to
//!   this rule too.
//! - Beside it: no crate compiles another's file by `#[path]`, and the bench and the test kit link none of
//!   Lambent's crates (the bench measures the release binaries and must not link them).
//!
//! A reference is a `use crate::…` / `super::…` / `self::…` (grouped trees too) or such a path anywhere in code,
//! macros and attributes included; comments, strings and `#[cfg(test)]` items are skipped. A path names the
//! deepest module it reaches (`crate::store::turns::KEY` is `store::turns`), and the crate root's own `use`s are
//! followed (`crate::Error` is `error`). Names a module brought in by a bare `use` are not followed further.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

type Module = Vec<String>;

fn show(module: &[String]) -> String {
    if module.is_empty() { "crate".to_owned() } else { module.join("::") }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    /// A string, character or number literal (its text does not matter).
    Lit,
}

impl Tok {
    fn is(&self, punct: char) -> bool {
        *self == Tok::Punct(punct)
    }

    fn ident(&self) -> Option<&str> {
        match self {
            Tok::Ident(name) => Some(name),
            _ => None,
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Rust source as tokens, without comments (doc comments included) and with literals blanked.
fn lex(source: &str) -> Vec<Tok> {
    let c: Vec<char> = source.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut toks = Vec::new();
    let mut i = 0;
    // From the opening quote of a (non-raw) string to just after its closing one.
    let skip_string = |mut i: usize| {
        i += 1;
        while i < c.len() && c[i] != '"' {
            i += if c[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    // From the opening quote of a character literal to just after its closing one.
    let skip_char = |mut i: usize| {
        i += 1;
        if at(i) == '\\' {
            i += 2;
        }
        while i < c.len() && c[i] != '\'' {
            i += 1;
        }
        i + 1
    };
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if is_ident_start(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            match (word.as_str(), at(i)) {
                ("b" | "c", '"') => {
                    i = skip_string(i);
                    toks.push(Tok::Lit);
                }
                ("b", '\'') => {
                    i = skip_char(i);
                    toks.push(Tok::Lit);
                }
                ("r", '#') if is_ident_start(at(i + 1)) => {
                    // A raw identifier, `r#type`.
                    let start = i + 1;
                    i += 1;
                    while i < c.len() && is_ident_char(c[i]) {
                        i += 1;
                    }
                    toks.push(Tok::Ident(c[start..i].iter().collect()));
                }
                ("r" | "br" | "cr", '"' | '#') => {
                    let mut hashes = 0;
                    while at(i) == '#' {
                        hashes += 1;
                        i += 1;
                    }
                    i += 1; // the opening quote
                    loop {
                        if i >= c.len() {
                            break;
                        }
                        if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                            i += 1 + hashes;
                            break;
                        }
                        i += 1;
                    }
                    toks.push(Tok::Lit);
                }
                _ => toks.push(Tok::Ident(word)),
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (is_ident_char(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit())) {
                i += 1;
            }
            toks.push(Tok::Lit);
        } else if ch == '"' {
            i = skip_string(i);
            toks.push(Tok::Lit);
        } else if ch == '\'' {
            if at(i + 1) == '\\' || at(i + 2) == '\'' {
                i = skip_char(i);
                toks.push(Tok::Lit);
            } else {
                // A lifetime or a label.
                i += 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
            }
        } else if ch == ':' && at(i + 1) == ':' {
            toks.push(Tok::Sep);
            i += 2;
        } else {
            toks.push(Tok::Punct(ch));
            i += 1;
        }
    }
    toks
}

/// Whether `toks[i..]` starts with `#[cfg(test)]`.
fn is_cfg_test(toks: &[Tok], i: usize) -> bool {
    let want = [Tok::Punct('#'), Tok::Punct('['), Tok::Ident("cfg".into()), Tok::Punct('(')];
    toks.get(i..i + 4) == Some(&want[..])
        && toks.get(i + 4) == Some(&Tok::Ident("test".into()))
        && toks.get(i + 5).is_some_and(|t| t.is(')'))
        && toks.get(i + 6).is_some_and(|t| t.is(']'))
}

/// The index just after the item that starts at `i` (its attributes, then up to its `;` or closing brace).
fn skip_item(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0i32;
    while i < toks.len() {
        match &toks[i] {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']') => depth -= 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            Tok::Punct(';') if depth == 0 => return i + 1,
            _ => {}
        }
        // An attribute (`#[…]`, closing at depth 0) is not the end of the item: it goes on to its `;` or `}`.
        i += 1;
    }
    i
}

/// One file's code: each token with the module it is in (inline `mod x { … }` blocks open their own), with
/// `#[cfg(test)]` items left out; and the modules it declares.
struct FileCode {
    tokens: Vec<(usize, Tok)>,
    modules: Vec<Module>,
    inline: Vec<Module>,
    declared: Vec<Module>,
}

fn code_of(module: &[String], source: &str) -> FileCode {
    let toks = lex(source);
    let mut code = FileCode { tokens: Vec::new(), modules: vec![module.to_vec()], inline: vec![], declared: vec![] };
    // (index into `code.modules`, the brace depth inside it)
    let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        if is_cfg_test(&toks, i) {
            i = skip_item(&toks, i + 7);
            continue;
        }
        let current = stack.last().unwrap().0;
        if toks[i].ident() == Some("mod")
            && let Some(name) = toks.get(i + 1).and_then(Tok::ident)
        {
            let mut child = code.modules[current].clone();
            child.push(name.to_owned());
            match toks.get(i + 2) {
                Some(Tok::Punct('{')) => {
                    code.inline.push(child.clone());
                    code.modules.push(child);
                    depth += 1;
                    stack.push((code.modules.len() - 1, depth));
                    i += 3;
                    continue;
                }
                Some(Tok::Punct(';')) => {
                    code.declared.push(child);
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        match toks[i] {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if stack.len() > 1 && stack.last().unwrap().1 == depth {
                    stack.pop();
                    depth -= 1;
                    i += 1;
                    continue;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        code.tokens.push((current, toks[i].clone()));
        i += 1;
    }
    code
}

/// The leaves of the use tree at `toks[*i..]`: each full path with the name it is bound to (`*` for a glob).
fn use_tree(toks: &[(usize, Tok)], i: &mut usize, prefix: &[String], out: &mut Vec<(Module, String)>) {
    let mut path = prefix.to_vec();
    let tok = |i: usize| toks.get(i).map(|(_, t)| t);
    loop {
        match tok(*i) {
            Some(Tok::Sep) => *i += 1,
            Some(Tok::Ident(name)) => {
                *i += 1;
                if name != "self" || path.is_empty() {
                    path.push(name.clone());
                }
                if tok(*i) == Some(&Tok::Sep) {
                    *i += 1;
                    continue;
                }
                let mut bound = path.last().cloned().unwrap_or_default();
                if tok(*i).and_then(Tok::ident) == Some("as") {
                    bound = tok(*i + 1).and_then(Tok::ident).unwrap_or("_").to_owned();
                    *i += 2;
                }
                out.push((path, bound));
                return;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                path.push("*".to_owned());
                out.push((path, "*".to_owned()));
                return;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                while let Some(t) = tok(*i) {
                    if t.is('}') {
                        *i += 1;
                        return;
                    }
                    let before = *i;
                    use_tree(toks, i, &path, out);
                    // Past the comma; past anything the tree did not take, so that it always moves on.
                    if tok(*i).is_some_and(|t| t.is(',')) || *i == before {
                        *i += 1;
                    }
                }
                return;
            }
            _ => return,
        }
    }
}

/// One use of a module by another, with the name used (an item, or the module itself).
#[derive(Debug, Clone)]
struct Reference {
    from: Module,
    to: Module,
    name: String,
}

/// The crate as modules and the references between them.
#[derive(Debug, Default)]
struct Crate {
    /// Every module: one per file, plus inline ones.
    modules: BTreeSet<Module>,
    /// What the crate root declares with `mod`.
    top_level: Vec<String>,
    references: Vec<Reference>,
    /// The crate root's source, for its doc comment.
    root_source: String,
}

/// The module a file under `src/` is: `store/turns.rs` is `store::turns`, `store/mod.rs` is `store`,
/// `lib.rs` the crate root.
fn module_of(relative: &str) -> Module {
    let mut parts: Vec<String> = relative.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|last| last == "mod") || parts == ["lib"] {
        parts.pop();
    }
    parts
}

/// What `path`, written in `from`, refers to: the deepest module it reaches and the first name past it.
fn resolve(
    from: &[String],
    path: &[String],
    modules: &BTreeSet<Module>,
    root_names: &BTreeMap<String, (Module, String)>,
) -> Option<(Module, String)> {
    let (mut module, mut rest): (Module, &[String]) = match path.first()?.as_str() {
        "crate" => (vec![], &path[1..]),
        "self" => (from.to_vec(), &path[1..]),
        "super" => (from.to_vec(), path),
        first => {
            // A path relative to `from` (2018 uniform paths), kept only when it names a module of its own.
            let mut child = from.to_vec();
            child.push(first.to_owned());
            if !modules.contains(&child) {
                return None;
            }
            (from.to_vec(), path)
        }
    };
    while rest.first().is_some_and(|s| s == "super") {
        module.pop()?;
        rest = &rest[1..];
    }
    for (k, segment) in rest.iter().enumerate() {
        let mut deeper = module.clone();
        deeper.push(segment.clone());
        if modules.contains(&deeper) {
            module = deeper;
            continue;
        }
        if module.is_empty()
            && k == 0
            && let Some((target, _)) = root_names.get(segment)
        {
            return Some((target.clone(), segment.clone()));
        }
        return Some((module, segment.clone()));
    }
    let name = module.last().cloned().unwrap_or_else(|| "crate".to_owned());
    Some((module, name))
}

/// Every path in `code` that starts from `crate`, `super` or `self`, and every `use` tree's leaves.
fn paths_in(code: &FileCode) -> Vec<(usize, Module)> {
    let toks = &code.tokens;
    let mut found = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let (module, tok) = &toks[i];
        if tok.ident() == Some("use") {
            let mut leaves = Vec::new();
            i += 1;
            use_tree(toks, &mut i, &[], &mut leaves);
            found.extend(leaves.into_iter().map(|(path, _)| (*module, path)));
            continue;
        }
        let starts = matches!(tok.ident(), Some("crate" | "super" | "self"))
            && toks.get(i + 1).is_some_and(|(_, t)| *t == Tok::Sep)
            && (i == 0 || toks[i - 1].1 != Tok::Sep);
        if starts {
            let mut path = vec![tok.ident().unwrap().to_owned()];
            i += 1;
            while toks.get(i).is_some_and(|(_, t)| *t == Tok::Sep) {
                match toks.get(i + 1).and_then(|(_, t)| t.ident()) {
                    Some(segment) => path.push(segment.to_owned()),
                    None => break,
                }
                i += 2;
            }
            found.push((*module, path));
            continue;
        }
        i += 1;
    }
    found
}

/// Reads a crate from its files: (path under `src/`, source).
fn scan(files: &[(String, String)]) -> Crate {
    let code: Vec<(Module, FileCode)> = files
        .iter()
        .map(|(path, source)| {
            let module = module_of(path);
            let code = code_of(&module, source);
            (module, code)
        })
        .collect();
    let mut krate = Crate::default();
    for (module, file) in &code {
        krate.modules.insert(module.clone());
        krate.modules.extend(file.inline.iter().cloned());
        if module.is_empty() {
            krate.top_level = file.declared.iter().map(|m| m[0].clone()).collect();
            krate.root_source = files.iter().find(|(p, _)| p == "lib.rs").map(|(_, s)| s.clone()).unwrap_or_default();
        }
    }
    // The crate root's `use`s: `crate::Error` is `error`'s.
    let mut root_names = BTreeMap::new();
    if let Some((_, root)) = code.iter().find(|(m, _)| m.is_empty()) {
        let toks = &root.tokens;
        let mut i = 0;
        while i < toks.len() {
            if toks[i].0 == 0 && toks[i].1.ident() == Some("use") {
                let mut leaves = Vec::new();
                i += 1;
                use_tree(toks, &mut i, &[], &mut leaves);
                for (path, bound) in leaves {
                    if let Some(target) = resolve(&[], &path, &krate.modules, &BTreeMap::new()) {
                        root_names.insert(bound, target);
                    }
                }
                continue;
            }
            i += 1;
        }
    }
    for (_, file) in &code {
        for (module, path) in paths_in(file) {
            let from = &file.modules[module];
            if let Some((to, name)) = resolve(from, &path, &krate.modules, &root_names) {
                krate.references.push(Reference { from: from.clone(), to, name });
            }
        }
    }
    krate
}

/// The `# Layers` section of the crate root's doc comment: the modules of each layer, from the bottom up.
fn layers(root_source: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let doc: Vec<&str> = root_source
        .lines()
        .map_while(|line| line.trim_start().strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect();
    let start = doc
        .iter()
        .position(|line| line.trim_end() == "# Layers")
        .ok_or("shared/src/lib.rs: its doc comment has no `# Layers` section")?;
    let mut items: Vec<String> = Vec::new();
    for line in doc[start + 1..].iter().take_while(|line| !line.starts_with('#')) {
        let numbered =
            line.split_once(". ").is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            items.push(line.to_string());
        } else if let Some(last) = items.last_mut().filter(|_| line.starts_with(' ')) {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    let mut layers = Vec::new();
    for item in items {
        let (number, rest) = item.split_once(". ").unwrap();
        let names = rest.split_once(':').map_or(rest, |(names, _)| names);
        let modules: Vec<String> = names
            .split("[`")
            .skip(1)
            .filter_map(|link| link.split_once("`]").map(|(name, _)| name.to_owned()))
            .collect();
        layers.push((number.parse().unwrap(), modules));
    }
    if layers.is_empty() {
        return Err("shared/src/lib.rs: its `# Layers` section lists no numbered layers".to_owned());
    }
    Ok(layers)
}

/// Where the `# Layers` section and the crate root's `mod`s disagree.
fn layer_drift(krate: &Crate) -> Result<Vec<String>, String> {
    let layers = layers(&krate.root_source)?;
    let mut problems = Vec::new();
    for (k, (number, _)) in layers.iter().enumerate() {
        if *number != k + 1 {
            problems.push(format!("layer {number} is listed where layer {} belongs: number them 1, 2, 3…", k + 1));
        }
    }
    for module in &krate.top_level {
        let named: Vec<usize> = layers.iter().filter(|(_, ms)| ms.contains(module)).map(|(n, _)| *n).collect();
        match named.as_slice() {
            [] => problems.push(format!("{module}: declared in lib.rs but in no layer: add it to `# Layers`")),
            [_] => {}
            many => problems.push(format!("{module}: named in more than one layer ({many:?}): keep one")),
        }
    }
    for (number, modules) in &layers {
        for module in modules {
            if !krate.top_level.contains(module) {
                problems.push(format!("{module}: named in layer {number}, but lib.rs declares no such module"));
            }
        }
    }
    Ok(problems)
}

/// Every use of a module of the same layer or a layer above, as `from -> to (why): names`.
fn layer_violations(krate: &Crate) -> Result<Vec<String>, String> {
    let layer_of: BTreeMap<String, usize> =
        layers(&krate.root_source)?.into_iter().flat_map(|(n, ms)| ms.into_iter().map(move |m| (m, n))).collect();
    let mut violations: BTreeMap<(Module, Module), BTreeSet<String>> = BTreeMap::new();
    for reference in &krate.references {
        let (Some(a), Some(b)) = (reference.from.first(), reference.to.first()) else { continue };
        if a == b {
            continue;
        }
        let (Some(la), Some(lb)) = (layer_of.get(a), layer_of.get(b)) else { continue };
        if lb >= la {
            violations
                .entry((reference.from.clone(), reference.to.clone()))
                .or_default()
                .insert(reference.name.clone());
        }
    }
    Ok(violations
        .into_iter()
        .map(|((from, to), names)| {
            let (la, lb) = (layer_of[&from[0]], layer_of[&to[0]]);
            let names = names.into_iter().collect::<Vec<_>>().join(", ");
            format!("{} -> {} (layer {lb} is not below layer {la}): {names}", show(&from), show(&to))
        })
        .collect())
}

/// Every circle among sibling modules, as `cycle: a -> b (names) -> a (names)`.
fn cycles(krate: &Crate) -> Vec<String> {
    // parent -> (child, child) -> names
    let mut graphs: BTreeMap<Module, BTreeMap<(String, String), BTreeSet<String>>> = BTreeMap::new();
    for reference in &krate.references {
        let (from, to) = (&reference.from, &reference.to);
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue; // within one module, to a module it is inside, or to one of its own submodules
        }
        graphs
            .entry(from[..common].to_vec())
            .or_default()
            .entry((from[common].clone(), to[common].clone()))
            .or_default()
            .insert(reference.name.clone());
    }
    let mut found = Vec::new();
    for (parent, edges) in &graphs {
        let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
        let mut successors: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
        for (a, b) in edges.keys() {
            successors.entry(a).or_default().push(b);
        }
        let next = |a: &String| successors.get(a).into_iter().flatten().copied();
        let reachable = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from];
            while let Some(n) = todo.pop() {
                for m in next(n) {
                    if seen.insert(m) {
                        todo.push(m);
                    }
                }
            }
            seen
        };
        let reach: BTreeMap<&String, BTreeSet<&String>> = nodes.iter().map(|n| (*n, reachable(n))).collect();
        let mut done = BTreeSet::new();
        for n in &nodes {
            if done.contains(n) {
                continue;
            }
            let component: Vec<&String> =
                nodes.iter().filter(|m| *m == n || (reach[n].contains(*m) && reach[*m].contains(n))).copied().collect();
            done.extend(component.iter().copied());
            if component.len() < 2 {
                continue;
            }
            // One walk through every module of the circle: shortest paths from each to the next, back to the first.
            let path = |from: &String, to: &String| -> Vec<String> {
                let mut before: BTreeMap<&String, &String> = BTreeMap::new();
                let mut queue = VecDeque::from([from]);
                while let Some(x) = queue.pop_front() {
                    for y in next(x).filter(|y| component.contains(y)) {
                        if y != from && !before.contains_key(y) {
                            before.insert(y, x);
                            queue.push_back(y);
                        }
                    }
                }
                let mut steps = vec![to.clone()];
                let mut at = to;
                while let Some(prev) = before.get(at).filter(|prev| **prev != from) {
                    steps.push((*prev).clone());
                    at = prev;
                }
                steps.reverse();
                steps
            };
            let mut walk = vec![component[0].clone()];
            for k in 0..component.len() {
                let (a, b) = (walk.last().unwrap().clone(), component[(k + 1) % component.len()]);
                if k + 1 < component.len() && walk.contains(b) {
                    continue;
                }
                walk.extend(path(&a, b));
            }
            let name = |child: &String| {
                let mut m = parent.clone();
                m.push(child.clone());
                show(&m)
            };
            let names =
                |a: &String, b: &String| edges[&(a.clone(), b.clone())].iter().cloned().collect::<Vec<_>>().join(", ");
            let mut line = format!("cycle: {}", name(&walk[0]));
            let mut walked = BTreeSet::new();
            for pair in walk.windows(2) {
                line.push_str(&format!(" -> {} ({})", name(&pair[1]), names(&pair[0], &pair[1])));
                walked.insert((pair[0].clone(), pair[1].clone()));
            }
            for (a, b) in edges.keys() {
                let inside = component.contains(&a) && component.contains(&b);
                if inside && !walked.contains(&(a.clone(), b.clone())) {
                    line.push_str(&format!("\n    and {} -> {} ({})", name(a), name(b), names(a, b)));
                }
            }
            found.push(line);
        }
    }
    found
}

/// Every `.rs` file under `dir` (from the repository's root) as (path under it, source), `skip`'s folders
/// left out.
fn rust_files(dir: &str, skip: &[&str]) -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, skip: &[&str], out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            if path.is_dir() && !skip.contains(&relative.as_str()) {
                walk(&path, root, skip, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files = Vec::new();
    walk(&root, &root, skip, &mut files);
    files
}

/// `shared/src/`, every `.rs` file as (path under `src/`, source).
fn core_sources() -> Vec<(String, String)> {
    let files = rust_files("shared/src", &[]);
    assert!(files.iter().any(|(p, _)| p == "lib.rs"), "no lib.rs under shared/src");
    files
}

/// Another crate's `src/` read as the core's is: its binary root (`main.rs`) as the crate root, the extra
/// binaries under `bin/` left out.
fn crate_sources(src: &str) -> Vec<(String, String)> {
    let mut files = rust_files(src, &["bin"]);
    for (path, _) in &mut files {
        if path == "main.rs" {
            *path = "lib.rs".to_owned();
        }
    }
    assert!(files.iter().any(|(p, _)| p == "lib.rs"), "no crate root under {src}");
    files
}

fn report(what: &str, problems: &[String]) -> String {
    format!("{} {what}:\n{}\n", problems.len(), problems.join("\n"))
}

#[test]
fn the_layers_in_the_core_crate_doc_name_every_module_once() {
    let problems = layer_drift(&scan(&core_sources())).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        problems.is_empty(),
        "{}",
        report("differences between `# Layers` (shared/src/lib.rs) and its `mod`s", &problems)
    );
}

#[test]
fn core_modules_only_use_the_layers_below_their_own() {
    let violations = layer_violations(&scan(&core_sources())).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        violations.is_empty(),
        "{}",
        report("uses of a module that is not in a lower layer (see `# Layers` in shared/src/lib.rs)", &violations)
    );
}

#[test]
fn no_two_core_modules_import_each_other_in_a_circle() {
    let cycles = cycles(&scan(&core_sources()));
    assert!(cycles.is_empty(), "{}", report("circles of sibling modules using each other", &cycles));
}

/// The crates beside the core keep the same rule: the test kit, and the bench (whose `relay`, `server` and
/// `services` once imported each other).
#[test]
fn no_two_modules_of_the_bench_or_the_test_kit_import_each_other_in_a_circle() {
    for src in ["bench/src", "testkit/src"] {
        let cycles = cycles(&scan(&crate_sources(src)));
        assert!(cycles.is_empty(), "{src}: {}", report("circles of sibling modules using each other", &cycles));
    }
}

/// A file is compiled in one crate only: code two crates need lives in a crate both depend on (the test kit),
/// not borrowed by `#[path]` into a second one.
#[test]
fn no_crate_borrows_another_crates_file_by_path() {
    let attribute = concat!("#[", "path");
    let mut borrowed = Vec::new();
    for dir in ["shared", "functions", "local", "site", "tests", "bench", "testkit"] {
        for (path, source) in rust_files(dir, &["node_modules", "target"]) {
            if source.lines().any(|line| line.trim_start().starts_with(attribute)) {
                borrowed.push(format!("{dir}/{path}"));
            }
        }
    }
    assert!(borrowed.is_empty(), "{}", report("files with a path attribute", &borrowed));
}

/// The bench measures the release binaries as child processes and must not link what it measures; the test
/// kit it shares with the tests links none of Lambent's crates either.
#[test]
fn the_bench_and_the_test_kit_link_none_of_lambents_crates() {
    for manifest in ["bench/Cargo.toml", "testkit/Cargo.toml"] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(manifest)).unwrap();
        let linked: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("lambent") && !line.starts_with("lambent-testkit"))
            .map(str::to_owned)
            .collect();
        assert!(linked.is_empty(), "{manifest}: {}", report("Lambent crates linked", &linked));
    }
}

/// The scanner itself, over a small made-up crate.
mod scanner {
    use super::*;

    fn fake() -> Crate {
        let files = [
            (
                "lib.rs",
                "//! A crate.\n//!\n//! # Layers\n//! Bottom up.\n//! 1. [`base`], [`low`], [`gone`]: the bottom.\n\
                 //! 2. [`store`]: over\n//!    [`base`]'s items.\n//!\n//! # Other\n//! 3. [`not_a_layer`]\n\
                 pub mod base;\npub mod low;\npub mod store;\nmod stray;\npub use base::Thing as Alias;\n",
            ),
            (
                "base.rs",
                "// crate::low::InAComment\n/* crate::low::Block /* nested */ crate::low::Still */\n\
                 /// A doc comment: [`crate::low::Doc`].\n\
                 const S: &str = \"crate::low::InAString \\\" crate::low::Escaped\";\n\
                 const R: &str = r#\"crate::low::Raw \" crate::low::RawToo\"#;\n\
                 fn f<'a>(c: char) -> Option<&'a str> { let _ = '\\''; let _ = '\"'; let _ = 'x'; None }\n\
                 pub struct Thing;\n\
                 #[cfg(test)]\nmod tests {\n    use crate::low::TestOnly;\n}\n\
                 fn g() { crate::stray::Inline::new(); }\n",
            ),
            ("low.rs", "use crate::store::{self, turns::{Turn, KEY}};\nfn h() -> crate::Alias { make() }\n"),
            ("stray.rs", "pub fn h() -> crate::Alias { make() }\n"),
            ("store/mod.rs", "mod turns;\nmod runtime;\npub struct Store;\npub(crate) fn int() {}\n"),
            (
                "store/turns.rs",
                "use super::{Store, int};\nuse super::runtime::Lease;\npub struct Turn;\npub const KEY: &str = \"\";\n\
                 mod inner { fn i() { super::super::runtime::renew(); } }\nuse super::*;\n",
            ),
            (
                "store/runtime.rs",
                "use crate::base::Thing;\npub struct Lease;\npub fn renew() { let _ = self::Lease; super::turns::KEY; }\n",
            ),
        ];
        scan(&files.map(|(p, s)| (p.to_owned(), s.to_owned())))
    }

    #[test]
    fn it_reads_references_and_skips_comments_strings_and_tests() {
        let krate = fake();
        let mut seen: Vec<String> =
            krate.references.iter().map(|r| format!("{} -> {}: {}", show(&r.from), show(&r.to), r.name)).collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                "base -> stray: Inline",
                "crate -> base: Thing",
                "low -> base: Alias",
                "low -> store: store",
                "low -> store::turns: KEY",
                "low -> store::turns: Turn",
                "store::runtime -> base: Thing",
                "store::runtime -> store::runtime: Lease",
                "store::runtime -> store::turns: KEY",
                "store::turns -> store: *",
                "store::turns -> store: Store",
                "store::turns -> store: int",
                "store::turns -> store::runtime: Lease",
                "store::turns::inner -> store::runtime: renew",
                "stray -> base: Alias",
            ]
        );
    }

    #[test]
    fn it_reports_an_upward_use_a_cycle_and_a_drifting_layer_list() {
        let krate = fake();
        assert_eq!(
            layer_drift(&krate).unwrap(),
            [
                "stray: declared in lib.rs but in no layer: add it to `# Layers`",
                "gone: named in layer 1, but lib.rs declares no such module",
            ]
        );
        assert_eq!(
            layer_violations(&krate).unwrap(),
            [
                "low -> base (layer 1 is not below layer 1): Alias",
                "low -> store (layer 2 is not below layer 1): store",
                "low -> store::turns (layer 2 is not below layer 1): KEY, Turn",
            ]
        );
        assert_eq!(
            cycles(&krate),
            [
                "cycle: base -> stray (Inline) -> base (Alias)",
                "cycle: store::runtime -> store::turns (KEY) -> store::runtime (Lease, renew)",
            ]
        );
    }

    #[test]
    fn a_crate_without_layers_is_an_error_not_a_pass() {
        let krate = scan(&[("lib.rs".to_owned(), "//! No layers.\npub mod a;\n".to_owned())]);
        assert!(layer_violations(&krate).unwrap_err().contains("no `# Layers` section"));
    }
}
