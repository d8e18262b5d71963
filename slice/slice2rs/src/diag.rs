//! Diagnostics: every phase appends to one list instead of stopping at the first problem.

use std::fmt;

/// Stable codes, so tests and people can refer to a kind of problem across releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// A file could not be read.
    E001,
    /// A preprocessor directive is malformed or unbalanced.
    E002,
    /// An `#include` names a file found in no include directory.
    E003,
    /// Syntax error.
    E004,
    /// A name is used that is not defined.
    E005,
    /// A name is defined twice in one scope.
    E006,
    /// A name refers to something of the wrong kind (e.g. a module used as a type).
    E007,
    /// Invalid inheritance (wrong kind of base, cycle, or several class bases).
    E008,
    /// Duplicate member, parameter, operation or enumerator.
    E009,
    /// Invalid or duplicate optional tag.
    E010,
    /// A constant or default value does not fit its type.
    E011,
    /// Invalid dictionary key type.
    E012,
    /// An operation throws something that is not an exception.
    E013,
    /// Out-parameters must follow in-parameters.
    E014,
    /// Duplicate enumerator value.
    E015,
    /// A compact id is out of range or used twice.
    E016,
    /// A non-local definition uses a local type.
    E017,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A place in a source file, 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One problem found in the Slice sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    pub code: Code,
    pub message: String,
}

impl Diagnostic {
    pub fn new(pos: Pos, code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error[{}]: {}", self.pos, self.code, self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Maps byte offsets of one file's text to line and column.
#[derive(Clone, Debug)]
pub struct LineIndex {
    file: String,
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(file: &str, text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            file: file.to_string(),
            starts,
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn pos(&self, offset: usize) -> Pos {
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        Pos {
            file: self.file.clone(),
            line: line + 1,
            col: offset - self.starts[line] + 1,
        }
    }

    pub fn line_pos(&self, line: usize) -> Pos {
        Pos {
            file: self.file.clone(),
            line,
            col: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_columns() {
        let idx = LineIndex::new("a.ice", "ab\ncd\n\nx");
        assert_eq!(idx.pos(0).line, 1);
        assert_eq!(idx.pos(4).line, 2);
        assert_eq!(idx.pos(4).col, 2);
        assert_eq!(idx.pos(7).line, 4);
    }
}
