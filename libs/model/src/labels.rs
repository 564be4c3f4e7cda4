use std::fmt;

use serde::{Deserialize, Serialize};

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, always sorted by name with unique names. Empty values are never stored
/// (Prometheus treats an empty value as an absent label).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Labels(Vec<Label>);

impl Labels {
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// Builds a label set from pairs in any order. Later duplicates win; empty values are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut b = LabelsBuilder::new();
        for (n, v) in pairs {
            b.set(n, v);
        }
        b.build()
    }

    /// Wraps labels the caller guarantees are sorted by name, unique and non-empty.
    pub fn from_sorted_unchecked(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Self(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A stable 64-bit hash of the label set: xxh3 of its [key](Labels::write_key).
    pub fn hash64(&self) -> u64 {
        hash_label_pairs(self.pairs())
    }

    /// Appends the set's key to `out`: `name 0xff value 0xff` per label, in order. 0xff never
    /// occurs in UTF-8, so two sets have the same key only if they are equal.
    pub fn write_key(&self, out: &mut Vec<u8>) {
        write_label_key(self.pairs(), out);
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|l| (l.name.as_str(), l.value.as_str()))
    }

    /// A copy without the named labels.
    pub fn without(&self, names: &[&str]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|l| !names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// A copy keeping only the named labels.
    pub fn keep_only(&self, names: &[&str]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|l| names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.clone(),
        }
    }
}

/// A label set borrowed from a request: name/value pairs sorted by name, names unique, values
/// non-empty (what [`Labels`] holds), without copying the strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelPairs<'a>(&'a [(&'a str, &'a str)]);

impl<'a> LabelPairs<'a> {
    /// `None` unless `pairs` is sorted by unique names and has no empty value.
    pub fn new(pairs: &'a [(&'a str, &'a str)]) -> Option<Self> {
        let sorted = pairs.windows(2).all(|w| w[0].0 < w[1].0);
        (sorted && pairs.iter().all(|(_, v)| !v.is_empty())).then_some(Self(pairs))
    }

    pub fn as_slice(&self) -> &'a [(&'a str, &'a str)] {
        self.0
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| self.0[i].1)
    }

    pub fn metric_name(&self) -> Option<&'a str> {
        self.get(METRIC_NAME)
    }

    /// Equal to `Labels::hash64` of the same set.
    pub fn hash64(&self) -> u64 {
        hash_label_pairs(self.0.iter().copied())
    }

    /// Equal to `Labels::write_key` of the same set.
    pub fn write_key(&self, out: &mut Vec<u8>) {
        write_label_key(self.0.iter().copied(), out);
    }

    pub fn to_labels(&self) -> Labels {
        Labels(self.0.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }
}

impl PartialEq<Labels> for LabelPairs<'_> {
    fn eq(&self, other: &Labels) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((n, v), l)| *n == l.name && *v == l.value)
    }
}

const SEPARATOR: &[u8] = &[0xff];

/// Hashes label pairs given in sorted order; equal to `Labels::hash64` of the same set.
pub fn hash_label_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    // The key on the stack while it fits (one-shot xxh3 is much faster than feeding a streaming
    // hasher four pieces per label); the streaming hasher gives the same value for longer keys.
    let mut buf = [0u8; 512];
    let mut len = 0;
    let mut stream: Option<xxhash_rust::xxh3::Xxh3> = None;
    for (n, v) in pairs {
        for part in [n.as_bytes(), SEPARATOR, v.as_bytes(), SEPARATOR] {
            match &mut stream {
                Some(h) => h.update(part),
                None if len + part.len() <= buf.len() => {
                    buf[len..len + part.len()].copy_from_slice(part);
                    len += part.len();
                }
                None => {
                    let mut h = xxhash_rust::xxh3::Xxh3::new();
                    h.update(&buf[..len]);
                    h.update(part);
                    stream = Some(h);
                }
            }
        }
    }
    match stream {
        Some(h) => h.digest(),
        None => hash_label_key(&buf[..len]),
    }
}

/// Appends the key of label pairs given in sorted order (see [`Labels::write_key`]).
pub fn write_label_key<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, out: &mut Vec<u8>) {
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0xff);
        out.extend_from_slice(v.as_bytes());
        out.push(0xff);
    }
}

/// The hash of a label set from its key; equal to `Labels::hash64` of the set.
pub fn hash_label_key(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Labels {
    /// Prometheus' text form: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let mut rest = self.0.iter().filter(|l| l.name != METRIC_NAME).peekable();
        if rest.peek().is_none() && name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        let mut first = true;
        for l in rest {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// Edits a label set; `build` sorts and removes empty values.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        match self.labels.iter_mut().find(|l| l.name == name) {
            Some(l) => l.value = value,
            None => self.labels.push(Label { name, value }),
        }
        self
    }

    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| l.name != name);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    pub fn build(&self) -> Labels {
        let mut v: Vec<Label> = self
            .labels
            .iter()
            .filter(|l| !l.value.is_empty())
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Labels(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_xxh3_of_the_key_at_every_length() {
        for n in [0usize, 1, 3, 40, 200] {
            let long = "v".repeat(n * 7);
            let l = Labels::from_pairs((0..n).map(|i| (format!("l{i:03}"), long.clone())));
            let mut key = Vec::new();
            l.write_key(&mut key);
            let mut streamed = xxhash_rust::xxh3::Xxh3::new();
            for x in &l {
                streamed.update(x.name.as_bytes());
                streamed.update(&[0xff]);
                streamed.update(x.value.as_bytes());
                streamed.update(&[0xff]);
            }
            assert_eq!(l.hash64(), streamed.digest(), "{n} labels");
            assert_eq!(l.hash64(), hash_label_key(&key), "{n} labels");
        }
    }

    #[test]
    fn label_pairs_agree_with_labels() {
        let pairs = [("__name__", "up"), ("job", "node"), ("zone", "a")];
        let p = LabelPairs::new(&pairs).unwrap();
        let l = Labels::from_pairs(pairs);
        assert_eq!(p.hash64(), l.hash64());
        let (mut pk, mut lk) = (Vec::new(), Vec::new());
        p.write_key(&mut pk);
        l.write_key(&mut lk);
        assert_eq!(pk, lk);
        assert!(p == l);
        assert_eq!(p.to_labels(), l);
        assert_eq!(p.metric_name(), Some("up"));
        assert_eq!(p.get("zone"), Some("a"));
        assert!(p != Labels::from_pairs([("__name__", "up"), ("job", "node")]));
        assert!(p != Labels::from_pairs([("__name__", "up"), ("job", "node"), ("zone", "b")]));
        assert!(LabelPairs::new(&[("b", "1"), ("a", "1")]).is_none());
        assert!(LabelPairs::new(&[("a", "1"), ("a", "2")]).is_none());
        assert!(LabelPairs::new(&[("a", "")]).is_none());
    }

    #[test]
    fn sorted_and_deduplicated() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.as_slice()[0].name, "a");
    }

    #[test]
    fn display() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        assert_eq!(l.to_string(), "up{job=\"x\"}");
        assert_eq!(Labels::from_pairs([("__name__", "up")]).to_string(), "up");
        assert_eq!(Labels::from_pairs([("a", "b")]).to_string(), "{a=\"b\"}");
    }

    #[test]
    fn hash_is_order_independent_of_construction() {
        let a = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let b = Labels::from_pairs([("b", "2"), ("a", "1")]);
        assert_eq!(a.hash64(), b.hash64());
        assert_ne!(a.hash64(), Labels::from_pairs([("a", "12")]).hash64());
    }
}
