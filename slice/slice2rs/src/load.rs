//! Reads the files to compile and, transitively, the files they include; each file is
//! preprocessed and parsed once, however often it is included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ast::File;
use crate::diag::{Code, Diagnostic, LineIndex};
use crate::parse::{offset, parse_file};
use crate::preprocess::{preprocess, Include};

/// One parsed source file.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as given or found, for messages.
    pub name: String,
    pub text: String,
    pub lines: LineIndex,
    pub ast: File,
}

impl SourceFile {
    pub fn pos(&self, at: crate::ast::At) -> crate::diag::Pos {
        self.lines.pos(offset(&self.text, at))
    }
}

/// Where file contents come from: the file system with include directories, or a map of
/// in-memory sources keyed by name (tests, tools).
pub enum Sources<'a> {
    Fs { include_dirs: &'a [PathBuf] },
    Memory(&'a HashMap<String, String>),
}

impl Sources<'_> {
    fn read(&self, path: &str) -> Result<String, String> {
        match self {
            Sources::Fs { .. } => std::fs::read_to_string(path).map_err(|e| e.to_string()),
            Sources::Memory(map) => map
                .get(path)
                .cloned()
                .ok_or_else(|| "no such source".to_string()),
        }
    }

    /// Finds an included file; `"x"` is looked up beside the includer first.
    fn find(&self, inc: &Include, includer: &str) -> Option<String> {
        match self {
            Sources::Memory(map) => map.contains_key(&inc.name).then(|| inc.name.clone()),
            Sources::Fs { include_dirs } => {
                let beside = Path::new(includer).parent().map(|d| d.join(&inc.name));
                let candidates = beside
                    .filter(|_| !inc.angled)
                    .into_iter()
                    .chain(include_dirs.iter().map(|d| d.join(&inc.name)));
                for c in candidates {
                    if c.is_file() {
                        return Some(c.to_string_lossy().into_owned());
                    }
                }
                None
            }
        }
    }

    /// The key under which a file counts as already loaded.
    fn identity(&self, path: &str) -> String {
        match self {
            Sources::Memory(_) => path.to_string(),
            Sources::Fs { .. } => std::fs::canonicalize(path)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| path.to_string()),
        }
    }
}

/// Loads `roots` and everything they include, in the order met.
pub fn load(
    roots: &[String],
    sources: &Sources<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<SourceFile> {
    let mut files = Vec::new();
    let mut seen = HashMap::new();
    for root in roots {
        load_one(root, sources, &mut seen, &mut files, diags, None);
    }
    files
}

fn load_one(
    path: &str,
    sources: &Sources<'_>,
    seen: &mut HashMap<String, ()>,
    files: &mut Vec<SourceFile>,
    diags: &mut Vec<Diagnostic>,
    from: Option<(&SourceFile, usize)>,
) {
    if seen.insert(sources.identity(path), ()).is_some() {
        return;
    }
    let text = match sources.read(path) {
        Ok(t) => t.replace("\r\n", "\n"),
        Err(e) => {
            let pos = match from {
                Some((f, line)) => f.lines.line_pos(line),
                None => crate::diag::Pos {
                    file: path.to_string(),
                    ..Default::default()
                },
            };
            diags.push(Diagnostic::new(
                pos,
                Code::E001,
                format!("cannot read `{path}`: {e}"),
            ));
            return;
        }
    };
    let lines = LineIndex::new(path, &text);
    let pre = preprocess(&text, &lines, diags);
    let (ast, errors) = parse_file(&pre.text);
    let file = SourceFile {
        name: path.to_string(),
        lines: LineIndex::new(path, &pre.text),
        text: pre.text,
        ast,
    };
    for e in errors {
        diags.push(Diagnostic::new(file.pos(e.at), Code::E004, e.message));
    }
    for inc in &pre.includes {
        match sources.find(inc, path) {
            Some(found) => load_one(&found, sources, seen, files, diags, Some((&file, inc.line))),
            None => diags.push(Diagnostic::new(
                file.lines.line_pos(inc.line),
                Code::E003,
                format!(
                    "included file `{}` not found in any include directory",
                    inc.name
                ),
            )),
        }
    }
    files.push(file);
}
