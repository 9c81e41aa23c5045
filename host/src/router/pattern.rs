//! Route patterns: literal and parameter segments, how they match a
//! path, and which of two is more specific.

use std::fmt;
use std::str::FromStr;

use super::path::{RequestPath, split_segments};

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must equal the (decoded) path segment.
    Literal(String),
    /// `{name}`: any non-empty segment.
    Param(String),
    /// `{name:int}`: an optional `-` followed by ASCII digits.
    IntParam(String),
}

impl Segment {
    /// Whether some path segment matches both.
    fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Literal(a), Self::Literal(b)) => a == b,
            (Self::Literal(l), Self::IntParam(_)) | (Self::IntParam(_), Self::Literal(l)) => {
                is_integer(l)
            }
            (Self::Literal(l), Self::Param(_)) | (Self::Param(_), Self::Literal(l)) => {
                !l.is_empty()
            }
            _ => true,
        }
    }

    /// Rank for "most specific wins": higher is more specific.
    fn specificity(&self) -> u8 {
        match self {
            Self::Literal(_) => 2,
            Self::IntParam(_) => 1,
            Self::Param(_) => 0,
        }
    }
}

/// Why a route pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PatternError {
    #[error("route path {0:?} must start with '/'")]
    NoLeadingSlash(String),
    #[error(
        "route path {path:?}: segment {segment:?} is not a valid parameter (use {{name}} or {{name:int}})"
    )]
    BadParam { path: String, segment: String },
    #[error("route path {path:?}: parameter {name:?} appears twice")]
    DuplicateParam { path: String, name: String },
}

/// A parsed route path such as `/api/orders/{id:int}/ship`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoutePattern {
    /// The pattern as the app wrote it, for banners and errors.
    raw: String,
    /// The parsed segments, without the leading empty one.
    segments: Vec<Segment>,
}

impl FromStr for RoutePattern {
    type Err = PatternError;

    fn from_str(raw: &str) -> Result<Self, PatternError> {
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(PatternError::NoLeadingSlash(raw.to_string()));
        };
        let mut segments = Vec::new();
        for part in split_segments(rest) {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                None if part.contains(['{', '}']) => {
                    return Err(PatternError::BadParam {
                        path: raw.to_string(),
                        segment: part.to_string(),
                    });
                }
                None => Segment::Literal(part.to_string()),
                Some(inner) => parse_param(inner).ok_or_else(|| PatternError::BadParam {
                    path: raw.to_string(),
                    segment: part.to_string(),
                })?,
            };
            if let Segment::Param(name) | Segment::IntParam(name) = &segment {
                let seen = segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) | Segment::IntParam(n) if n == name));
                if seen {
                    return Err(PatternError::DuplicateParam {
                        path: raw.to_string(),
                        name: name.clone(),
                    });
                }
            }
            segments.push(segment);
        }
        Ok(Self {
            raw: raw.to_string(),
            segments,
        })
    }
}

/// Parses the inside of `{...}`: `name` or `name:int`.
fn parse_param(inner: &str) -> Option<Segment> {
    let (name, kind) = match inner.split_once(':') {
        Some((name, kind)) => (name, Some(kind)),
        None => (inner, None),
    };
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return None;
    }
    match kind {
        None => Some(Segment::Param(name.to_string())),
        Some("int") => Some(Segment::IntParam(name.to_string())),
        Some(_) => None,
    }
}

fn is_integer(segment: &str) -> bool {
    let digits = segment.strip_prefix('-').unwrap_or(segment);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl RoutePattern {
    /// The pattern with parameter names erased: two patterns with the same
    /// shape match exactly the same paths, so they conflict.
    pub(crate) fn shape(&self) -> String {
        let mut shape = String::new();
        for segment in &self.segments {
            shape.push('/');
            match segment {
                Segment::Literal(lit) => shape.push_str(lit),
                Segment::Param(_) => shape.push_str("{}"),
                Segment::IntParam(_) => shape.push_str("{int}"),
            }
        }
        if shape.is_empty() {
            shape.push('/');
        }
        shape
    }

    /// Matches decoded path segments; on success returns the bound parameters.
    pub(super) fn matches(&self, path: &[String]) -> Option<Vec<(String, String)>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, value) in self.segments.iter().zip(path) {
            match segment {
                Segment::Literal(lit) if lit == value => {}
                Segment::Param(name) if !value.is_empty() => {
                    params.push((name.clone(), value.clone()));
                }
                Segment::IntParam(name) if is_integer(value) => {
                    params.push((name.clone(), value.clone()));
                }
                _ => return None,
            }
        }
        Some(params)
    }

    /// Whether a concrete path is one this pattern serves.
    pub(crate) fn matches_path(&self, path: &RequestPath) -> bool {
        self.matches(&path.segments).is_some()
    }

    /// Whether some concrete path matches both patterns.
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a.overlaps(b))
    }

    /// The pattern of exactly one concrete path (a static file's).
    pub(crate) fn literal(path: &RequestPath) -> Self {
        Self {
            raw: path.decoded.clone(),
            segments: path
                .segments
                .iter()
                .cloned()
                .map(Segment::Literal)
                .collect(),
        }
    }

    pub(super) fn specificity(&self) -> impl Iterator<Item = u8> + '_ {
        self.segments.iter().map(Segment::specificity)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}
