//! Runs Prometheus' PromQL test scripts (`shared/conformance/promql/*.test`, format in FORMAT.md)
//! against the engine, prints `file: passed/total`, and requires 100% for the stable files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hestia_model::{is_stale_nan, Labels, LabelsBuilder, STALE_NAN_BITS};
use hestia_promql::{
    almost_equal, CounterResetHint, Engine, EngineOptions, FloatHistogram, MemoryStorage, Span,
    Value,
};

const STABLE: &[&str] = &[
    "aggregators",
    "at_modifier",
    "collision",
    "functions",
    "histograms",
    "literals",
    "limit",
    "name_label_dropping",
    "native_histograms",
    "operators",
    "range_queries",
    "selectors",
    "staleness",
    "subquery",
    "trig_functions",
];

const EXPERIMENTAL: &[&str] = &[
    "duration_expression",
    "extended_vectors",
    "fill-modifier",
    "info",
    "start_timestamps",
    "type_and_unit",
];

/// Known gaps, skipped and printed: (file, line of the `eval`, reason). A skip in a stable file
/// still counts as a failure.
const SKIP: &[(&str, usize, &str)] = &[];

const EPSILON: f64 = 0.000001;

fn conformance_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../../../shared/conformance/promql"),
        manifest.join("../../shared/conformance/promql"),
        PathBuf::from("/work/shared/conformance/promql"),
    ];
    for c in &candidates {
        if c.join("FORMAT.md").exists() || c.join("functions.test").exists() {
            return c.clone();
        }
    }
    panic!(
        "PromQL conformance scripts not found; looked in {:?}",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Parsing of the test language.

fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut total: i64 = 0;
    let b = s.as_bytes();
    let mut i = 0;
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if st == i {
            return None;
        }
        let n: i64 = s[st..i].parse().ok()?;
        let us = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = match &s[us..i] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            "" if us == b.len() && st == 0 => 1000,
            _ => return None,
        };
        total += n * mult;
    }
    Some(if neg { -total } else { total })
}

fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let (sign, body) = match t.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = match body.to_ascii_lowercase().as_str() {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        b if b.starts_with("0x") => i64::from_str_radix(&b[2..], 16).ok()? as f64,
        _ => body.parse::<f64>().ok()?,
    };
    Some(sign * v)
}

/// Parses `name{a="b", ...}` at the start of `s`; returns labels and the rest.
fn parse_metric(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let mut b = LabelsBuilder::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
    {
        i += 1;
    }
    if i > 0 {
        b.set("__name__", &s[..i]);
    }
    let mut rest = &s[i..];
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
                continue;
            }
            // Label name (possibly quoted) or a quoted metric name alone.
            let (name, r) =
                if rest.starts_with('"') || rest.starts_with('\'') || rest.starts_with('`') {
                    parse_quoted(rest)?
                } else {
                    let e = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == ':'))
                        .unwrap_or(rest.len());
                    (rest[..e].to_string(), &rest[e..])
                };
            let r = r.trim_start();
            if let Some(r2) = r.strip_prefix('=') {
                let (v, r3) = parse_quoted(r2.trim_start())?;
                b.set(name, v);
                rest = r3;
            } else {
                b.set("__name__", name);
                rest = r;
            }
        }
    }
    Ok((b.build(), rest))
}

fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let q = s.chars().next().ok_or("expected quote")?;
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Ok((out, &s[i + 1..]));
        }
        if c == '\\' && q != '`' {
            let (_, e) = chars.next().ok_or("bad escape")?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'x' => {
                    let h: String = (0..2).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    let byte = u8::from_str_radix(&h, 16).map_err(|e| e.to_string())?;
                    out.push(byte as char);
                }
                'u' => {
                    let h: String = (0..4).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    let cp = u32::from_str_radix(&h, 16).map_err(|e| e.to_string())?;
                    out.push(char::from_u32(cp).unwrap_or('?'));
                }
                other => {
                    out.push('\\');
                    out.push(other)
                }
            }
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated string in {s}"))
}

#[derive(Debug, Clone)]
enum Point {
    Omitted,
    F(f64),
    H(Box<FloatHistogram>, bool),
}

fn parse_hist(s: &str) -> Result<(FloatHistogram, bool), String> {
    // `s` is the content between `{{` and `}}`.
    let mut h = FloatHistogram::default();
    let mut hint_given = false;
    let mut buckets: Vec<f64> = Vec::new();
    let mut nbuckets: Vec<f64> = Vec::new();
    let (mut offset, mut noffset) = (0i32, 0i32);
    let mut rest = s.trim();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("bad histogram field in {s}"))?;
        let key = rest[..colon].trim();
        rest = rest[colon + 1..].trim_start();
        let val;
        if rest.starts_with('[') {
            let end = rest.find(']').ok_or("unterminated list")?;
            val = &rest[1..end];
            rest = rest[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            val = &rest[..end];
            rest = rest[end..].trim_start();
        }
        let list = || -> Result<Vec<f64>, String> {
            val.split_whitespace()
                .map(|x| parse_float(x).ok_or_else(|| format!("bad number {x}")))
                .collect()
        };
        let num = || parse_float(val).ok_or_else(|| format!("bad number {val}"));
        match key {
            "schema" => h.schema = num()? as i32,
            "sum" => h.sum = num()?,
            "count" => h.count = num()?,
            "z_bucket" => h.zero_count = num()?,
            "z_bucket_w" => h.zero_threshold = num()?,
            "buckets" => buckets = list()?,
            "n_buckets" => nbuckets = list()?,
            "offset" => offset = num()? as i32,
            "n_offset" => noffset = num()? as i32,
            "custom_values" => h.custom_values = list()?,
            "counter_reset_hint" => {
                hint_given = true;
                h.counter_reset_hint = match val {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return Err(format!("bad counter_reset_hint {val}")),
                }
            }
            _ => return Err(format!("unknown histogram field {key}")),
        }
    }
    if !buckets.is_empty() {
        h.positive_spans = vec![Span {
            offset,
            length: buckets.len() as u32,
        }];
        h.positive_buckets = buckets;
    }
    if !nbuckets.is_empty() {
        h.negative_spans = vec![Span {
            offset: noffset,
            length: nbuckets.len() as u32,
        }];
        h.negative_buckets = nbuckets;
    }
    Ok((h, hint_given))
}

/// Splits a values part into items; `{{...}}` groups stay together.
fn split_items(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' && chars.get(i + 1) == Some(&'{') {
            depth += 1;
            cur.push_str("{{");
            i += 2;
            continue;
        }
        if c == '}' && chars.get(i + 1) == Some(&'}') && depth > 0 {
            depth -= 1;
            cur.push_str("}}");
            i += 2;
            continue;
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    // Join `x 3` style separated repetitions is not used; keep as is.
    items
}

fn expand_item(item: &str) -> Result<Vec<Point>, String> {
    if item == "_" {
        return Ok(vec![Point::Omitted]);
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| format!("bad item {item}"))?;
        return Ok(vec![Point::Omitted; n]);
    }
    if item == "stale" {
        return Ok(vec![Point::F(f64::from_bits(STALE_NAN_BITS))]);
    }
    if item.starts_with("{{") {
        let close = item.find("}}").ok_or("unterminated histogram")?;
        let (h, hint) = parse_hist(&item[2..close])?;
        let rest = &item[close + 2..];
        if rest.is_empty() {
            return Ok(vec![Point::H(Box::new(h), hint)]);
        }
        if let Some(n) = rest.strip_prefix('x') {
            let n: usize = n.parse().map_err(|_| format!("bad item {item}"))?;
            return Ok(vec![Point::H(Box::new(h), hint); n + 1]);
        }
        let sign = if rest.starts_with('+') { 1.0 } else { -1.0 };
        let rest = &rest[1..];
        let close2 = rest.find("}}").ok_or("unterminated histogram")?;
        let (inc, _) = parse_hist(&rest[2..close2])?;
        let n: usize = rest[close2 + 2..]
            .strip_prefix('x')
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| format!("bad item {item}"))?;
        let mut out = Vec::with_capacity(n + 1);
        let mut cur = h;
        for _ in 0..=n {
            out.push(Point::H(Box::new(cur.clone()), hint));
            let r = if sign > 0.0 {
                cur.add(&inc)
            } else {
                cur.sub(&inc)
            };
            r.map(|_| ()).map_err(|e| format!("{e:?}"))?;
            cur.counter_reset_hint = h_hint(&cur);
        }
        return Ok(out);
    }
    if let Some(xpos) = item.rfind('x') {
        let (head, n) = (&item[..xpos], &item[xpos + 1..]);
        if let Ok(n) = n.parse::<usize>() {
            // head is `a`, `a+b` or `a-b`.
            let split = head
                .char_indices()
                .skip(1)
                .find(|(i, c)| (*c == '+' || *c == '-') && !head[..*i].ends_with(['e', 'E']))
                .map(|(i, _)| i);
            let (a, b) = match split {
                Some(i) => (
                    parse_float(&head[..i]).ok_or_else(|| format!("bad item {item}"))?,
                    parse_float(&head[i..]).ok_or_else(|| format!("bad item {item}"))?,
                ),
                None => (
                    parse_float(head).ok_or_else(|| format!("bad item {item}"))?,
                    0.0,
                ),
            };
            let mut out = Vec::with_capacity(n + 1);
            let mut v = a;
            for _ in 0..=n {
                out.push(Point::F(v));
                v += b;
            }
            return Ok(out);
        }
    }
    parse_float(item)
        .map(|v| vec![Point::F(v)])
        .ok_or_else(|| format!("bad value {item}"))
}

fn h_hint(h: &FloatHistogram) -> CounterResetHint {
    h.counter_reset_hint
}

fn parse_points(s: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for it in split_items(s) {
        out.extend(expand_item(&it)?);
    }
    Ok(out)
}

fn parse_series_line(line: &str) -> Result<(Labels, Vec<Point>), String> {
    let (labels, rest) = parse_metric(line)?;
    Ok((labels, parse_points(rest)?))
}

// ---------------------------------------------------------------------------------------------
// Commands.

#[derive(Debug, Default)]
struct Expect {
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    warn: Vec<(Option<bool>, String)>,
    info: Vec<(Option<bool>, String)>,
    any_warn: bool,
    any_info: bool,
    no_warn: bool,
    no_info: bool,
    ordered: bool,
    string: Option<String>,
    range_vector: Option<(i64, i64, i64)>,
}

#[derive(Debug)]
struct Eval {
    line: usize,
    query: String,
    instant: Option<i64>,
    range: Option<(i64, i64, i64)>,
    expect: Expect,
    scalar: Option<f64>,
    series: Vec<(Labels, Vec<Point>)>,
}

enum Cmd {
    Load {
        interval: i64,
        nhcb: bool,
        series: Vec<(Labels, Vec<Point>)>,
    },
    Clear,
    Eval(Box<Eval>),
}

fn parse_expect(line: &str, e: &mut Expect) -> Result<(), String> {
    let body = line
        .trim()
        .strip_prefix("expect")
        .ok_or("not an expect")?
        .trim();
    let (kind, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    let rest = rest.trim();
    let parse_msg = |rest: &str| -> Result<Option<(bool, String)>, String> {
        if rest.is_empty() {
            return Ok(None);
        }
        let (mt, msg) = rest
            .split_once(':')
            .ok_or_else(|| format!("bad expect line {line}"))?;
        let msg = msg.trim().to_string();
        match mt.trim() {
            "msg" => Ok(Some((false, msg))),
            "regex" => Ok(Some((true, msg))),
            other => Err(format!("bad match type {other}")),
        }
    };
    match kind {
        "fail" => {
            e.fail = true;
            match parse_msg(rest)? {
                Some((false, m)) => e.fail_msg = Some(m),
                Some((true, m)) => e.fail_regex = Some(m),
                None => {}
            }
        }
        "warn" => match parse_msg(rest)? {
            Some((re, m)) => e.warn.push((Some(re), m)),
            None => e.any_warn = true,
        },
        "info" => match parse_msg(rest)? {
            Some((re, m)) => e.info.push((Some(re), m)),
            None => e.any_info = true,
        },
        "no_warn" => e.no_warn = true,
        "no_info" => e.no_info = true,
        "ordered" => e.ordered = true,
        "string" => {
            let (s, _) = parse_quoted(rest)?;
            e.string = Some(s);
        }
        "range" => {
            // expect range vector from <start> to <end> step <step>
            let w: Vec<&str> = rest.split_whitespace().collect();
            if w.len() != 7 || w[0] != "vector" {
                return Err(format!("bad expect range line {line}"));
            }
            let p = |s: &str| parse_duration(s).ok_or_else(|| format!("bad duration {s}"));
            e.range_vector = Some((p(w[2])?, p(w[4])?, p(w[6])?));
        }
        _ => return Err(format!("unknown expectation {kind}")),
    }
    Ok(())
}

fn parse_file(text: &str) -> Result<Vec<Cmd>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    let is_body = |l: &str| {
        !l.trim().is_empty()
            && !l.trim_start().starts_with('#')
            && (l.starts_with(' ') || l.starts_with('\t'))
    };
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        let lineno = i + 1;
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() {
            let l = lines[i];
            if l.trim().is_empty() {
                break;
            }
            if l.trim_start().starts_with('#') {
                i += 1;
                continue;
            }
            let expect_line = l.trim_start().starts_with("expect") && !t.starts_with("load");
            if !is_body(l) && !expect_line {
                break;
            }
            body.push(l);
            i += 1;
        }
        if t == "clear" {
            cmds.push(Cmd::Clear);
            continue;
        }
        if let Some(rest) = t.strip_prefix("load") {
            let (nhcb, rest) = match rest.strip_prefix("_with_nhcb") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let interval = parse_duration(rest.trim())
                .ok_or_else(|| format!("line {lineno}: bad interval"))?;
            let mut series = Vec::new();
            for l in body {
                series.push(parse_series_line(l).map_err(|e| format!("line {lineno}: {e}"))?);
            }
            cmds.push(Cmd::Load {
                interval,
                nhcb,
                series,
            });
            continue;
        }
        if t.starts_with("eval") {
            let (head, rest) = t.split_once(char::is_whitespace).ok_or("bad eval")?;
            let mut expect = Expect::default();
            match head {
                "eval" => {}
                "eval_fail" => expect.fail = true,
                "eval_warn" => expect.any_warn = true,
                "eval_info" => expect.any_info = true,
                "eval_ordered" => expect.ordered = true,
                _ => return Err(format!("line {lineno}: unknown command {head}")),
            }
            let rest = rest.trim();
            let (instant, range, query) = if let Some(r) = rest.strip_prefix("instant at ") {
                let (ts, q) = r.split_once(char::is_whitespace).ok_or("bad eval")?;
                (
                    Some(
                        parse_duration(ts)
                            .ok_or_else(|| format!("line {lineno}: bad time {ts}"))?,
                    ),
                    None,
                    q,
                )
            } else if let Some(r) = rest.strip_prefix("range from ") {
                let w: Vec<&str> = r.splitn(6, char::is_whitespace).collect();
                if w.len() < 6 || w[1] != "to" || w[3] != "step" {
                    return Err(format!("line {lineno}: bad range eval"));
                }
                let p = |s: &str| {
                    parse_duration(s).ok_or_else(|| format!("line {lineno}: bad duration {s}"))
                };
                (None, Some((p(w[0])?, p(w[2])?, p(w[4])?)), w[5])
            } else {
                return Err(format!("line {lineno}: bad eval"));
            };
            let mut ev = Eval {
                line: lineno,
                query: query.to_string(),
                instant,
                range,
                expect,
                scalar: None,
                series: Vec::new(),
            };
            for l in body {
                let lt = l.trim();
                if lt.starts_with("expect ") || lt == "expect" {
                    parse_expect(lt, &mut ev.expect).map_err(|e| format!("line {lineno}: {e}"))?;
                } else if let Some(m) = lt.strip_prefix("expected_fail_message") {
                    ev.expect.fail_msg = Some(m.trim().to_string());
                } else if let Some(m) = lt.strip_prefix("expected_fail_regexp") {
                    ev.expect.fail_regex = Some(m.trim().to_string());
                } else if let Some(v) = parse_float(lt) {
                    ev.scalar = Some(v);
                } else {
                    ev.series
                        .push(parse_series_line(lt).map_err(|e| format!("line {lineno}: {e}"))?);
                }
            }
            cmds.push(Cmd::Eval(Box::new(ev)));
            continue;
        }
        return Err(format!("line {lineno}: unknown command {t}"));
    }
    Ok(cmds)
}

// ---------------------------------------------------------------------------------------------
// Loading.

fn load(storage: &mut MemoryStorage, interval: i64, nhcb: bool, series: &[(Labels, Vec<Point>)]) {
    for (labels, pts) in series {
        for (k, p) in pts.iter().enumerate() {
            let t = k as i64 * interval;
            match p {
                Point::Omitted => {}
                Point::F(v) => storage.add_float(labels, t, *v),
                Point::H(h, _) => storage.add_histogram(labels, t, (**h).clone()),
            }
        }
    }
    if nhcb {
        load_nhcb(storage, interval, series);
    }
}

/// Buckets by `le`, then the `_sum` and `_count` points of one classic histogram.
type Family = (
    std::collections::BTreeMap<String, Vec<Point>>,
    Option<Vec<Point>>,
    Option<Vec<Point>>,
);

/// Converts classic `_bucket` series into native histograms with custom buckets.
fn load_nhcb(storage: &mut MemoryStorage, interval: i64, series: &[(Labels, Vec<Point>)]) {
    use std::collections::BTreeMap;
    // family labels (name without _bucket, no le) -> (le -> points), plus sum/count.
    let mut fams: BTreeMap<Labels, Family> = BTreeMap::new();
    for (labels, pts) in series {
        let name = labels.metric_name().unwrap_or("");
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 2)
        } else {
            continue;
        };
        let mut b = labels.to_builder();
        b.set("__name__", base);
        b.remove("le");
        let key = b.build();
        let e = fams.entry(key).or_default();
        match kind {
            0 => {
                if let Some(le) = labels.get("le") {
                    e.0.insert(le.to_string(), pts.clone());
                }
            }
            1 => e.1 = Some(pts.clone()),
            _ => e.2 = Some(pts.clone()),
        }
    }
    for (labels, (buckets, sum, count)) in fams {
        if buckets.is_empty() {
            continue;
        }
        let mut les: Vec<(f64, Vec<Point>)> = buckets
            .into_iter()
            .filter_map(|(le, p)| parse_float(&le).map(|v| (v, p)))
            .collect();
        les.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = les.iter().map(|x| x.1.len()).max().unwrap_or(0);
        for k in 0..n {
            let mut cum = Vec::new();
            let mut ok = true;
            for (_, p) in &les {
                match p.get(k) {
                    Some(Point::F(v)) if !is_stale_nan(*v) => cum.push(*v),
                    _ => ok = false,
                }
            }
            if !ok {
                continue;
            }
            let mut counts = Vec::new();
            let mut prev = 0.0;
            for c in &cum {
                counts.push(c - prev);
                prev = *c;
            }
            let custom: Vec<f64> = les.iter().map(|x| x.0).filter(|v| v.is_finite()).collect();
            let get = |p: &Option<Vec<Point>>| match p.as_ref().and_then(|v| v.get(k)) {
                Some(Point::F(v)) => Some(*v),
                _ => None,
            };
            let total = get(&count).unwrap_or(prev);
            let h = FloatHistogram {
                schema: hestia_promql::CUSTOM_BUCKETS_SCHEMA,
                count: total,
                sum: get(&sum).unwrap_or(0.0),
                positive_spans: vec![Span {
                    offset: 0,
                    length: counts.len() as u32,
                }],
                positive_buckets: counts,
                custom_values: custom,
                ..Default::default()
            };
            let mut h = h;
            h.compact();
            storage.add_histogram(&labels, k as i64 * interval, h);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation and comparison.

fn fmt_points(pts: &[(i64, Option<f64>, Option<&FloatHistogram>)]) -> String {
    pts.iter()
        .map(|(t, f, h)| match (f, h) {
            (Some(f), _) => format!("{f}@{t}"),
            (_, Some(h)) => format!("{h}@{t}"),
            _ => format!("?@{t}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn point_matches(exp: &Point, f: Option<f64>, h: Option<&FloatHistogram>) -> bool {
    match (exp, f, h) {
        (Point::F(e), Some(a), None) => {
            if is_stale_nan(*e) {
                is_stale_nan(a)
            } else {
                almost_equal(*e, a, EPSILON)
            }
        }
        (Point::H(e, hint_given), None, Some(a)) => {
            let mut e2 = (**e).clone();
            e2.compact();
            let mut a2 = a.clone();
            a2.compact();
            a2.approx_eq(&e2, EPSILON)
                && (!hint_given || e.counter_reset_hint == a.counter_reset_hint)
        }
        _ => false,
    }
}

type Got<'a> = Vec<(Labels, Vec<(i64, Option<f64>, Option<&'a FloatHistogram>)>)>;

fn result_series(v: &Value) -> Got<'_> {
    match v {
        Value::Vector(vs) => vs
            .iter()
            .map(|s| {
                (
                    s.labels.clone(),
                    vec![(s.t, s.h.is_none().then_some(s.f), s.h.as_ref())],
                )
            })
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                let mut pts: Vec<(i64, Option<f64>, Option<&FloatHistogram>)> = s
                    .floats
                    .iter()
                    .map(|p| (p.t, Some(p.v), None))
                    .chain(s.histograms.iter().map(|(t, h)| (*t, None, Some(h))))
                    .collect();
                pts.sort_by_key(|p| p.0);
                (s.labels.clone(), pts)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn compare(ev: &Eval, value: &Value, times: &[i64]) -> Result<(), String> {
    if let Some(s) = &ev.expect.string {
        return match value {
            Value::String { v, .. } if v == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {other:?}")),
        };
    }
    if let Some(exp) = ev.scalar {
        return match value {
            Value::Scalar { v, .. } if almost_equal(exp, *v, EPSILON) => Ok(()),
            other => Err(format!("expected scalar {exp}, got {other:?}")),
        };
    }
    if let Value::Scalar { v, .. } = value {
        return Err(format!("expected vector/matrix, got scalar {v}"));
    }
    if let Value::String { .. } = value {
        return Err("unexpected string result".into());
    }
    let got = result_series(value);
    if got.len() != ev.series.len() {
        return Err(format!(
            "expected {} series, got {}: {}",
            ev.series.len(),
            got.len(),
            got.iter()
                .map(|g| format!("{} {}", fmt_labels(&g.0), fmt_points(&g.1)))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for (idx, (el, ep)) in ev.series.iter().enumerate() {
        let Some(gi) = got.iter().position(|g| &g.0 == el) else {
            return Err(format!(
                "expected series {} not found; got {}",
                fmt_labels(el),
                got.iter()
                    .map(|g| fmt_labels(&g.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        if ev.expect.ordered && gi != idx {
            return Err(format!(
                "series {} at position {gi}, expected {idx}",
                fmt_labels(el)
            ));
        }
        let gp = &got[gi].1;
        // Expected points aligned with `times`; `_` means absent.
        let mut want: Vec<(i64, &Point)> = Vec::new();
        for (k, p) in ep.iter().enumerate() {
            if matches!(p, Point::Omitted) {
                continue;
            }
            let t = if times.len() == 1 && ep.len() == 1 {
                times[0]
            } else {
                *times.get(k).ok_or("too many expected points")?
            };
            want.push((t, p));
        }
        let ok = want.len() == gp.len()
            && want.iter().zip(gp).all(|((wt, wp), (gt, gf, gh))| {
                (times.len() == 1 || wt == gt) && point_matches(wp, *gf, *gh)
            });
        if !ok {
            return Err(format!(
                "series {}: expected {:?}, got {}",
                fmt_labels(el),
                want.iter()
                    .map(|(t, p)| format!("{p:?}@{t}"))
                    .collect::<Vec<_>>(),
                fmt_points(gp)
            ));
        }
    }
    Ok(())
}

fn fmt_labels(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}={:?}", x.name, x.value);
    }
    s.push('}');
    s
}

fn check_annotations(
    kind: &str,
    got: &[String],
    any: bool,
    none: bool,
    exp: &[(Option<bool>, String)],
) -> Result<(), String> {
    if none && !got.is_empty() {
        return Err(format!("expected no {kind}, got {got:?}"));
    }
    if any && got.is_empty() {
        return Err(format!("expected a {kind}, got none"));
    }
    let matches = |e: &(Option<bool>, String), g: &str| -> bool {
        match e.0 {
            Some(true) => regex::Regex::new(&format!("^(?:{})$", e.1))
                .map(|r| r.is_match(g))
                .unwrap_or(false),
            _ => e.1 == g,
        }
    };
    for e in exp {
        if !got.iter().any(|g| matches(e, g)) {
            return Err(format!("expected {kind} {:?} not found in {got:?}", e.1));
        }
    }
    if !exp.is_empty() {
        for g in got {
            if !exp.iter().any(|e| matches(e, g)) {
                return Err(format!("unexpected {kind} {g:?}"));
            }
        }
    }
    Ok(())
}

async fn run_eval(engine: &Engine, storage: &MemoryStorage, ev: &Eval) -> Result<(), String> {
    let res = match (ev.instant, ev.range) {
        (Some(t), _) => engine.instant_query(storage, &ev.query, t).await,
        (None, Some((s, e, st))) => engine.range_query(storage, &ev.query, s, e, st).await,
        _ => return Err("bad eval".into()),
    };
    let ex = &ev.expect;
    let res = match res {
        Err(e) => {
            if !ex.fail {
                return Err(format!("unexpected error: {e}"));
            }
            let msg = e.to_string();
            if let Some(m) = &ex.fail_msg {
                if m.trim_matches('"') != msg && *m != msg {
                    return Err(format!("expected error {m:?}, got {msg:?}"));
                }
            }
            if let Some(r) = &ex.fail_regex {
                let r = r.trim_matches('"');
                let re = regex::Regex::new(r).map_err(|e| e.to_string())?;
                if !re.is_match(&msg) {
                    return Err(format!("expected error matching {r:?}, got {msg:?}"));
                }
            }
            return Ok(());
        }
        Ok(r) => r,
    };
    if ex.fail {
        return Err(format!("expected failure, got {:?}", res.value));
    }
    check_annotations("warn", &res.warnings, ex.any_warn, ex.no_warn, &ex.warn)?;
    check_annotations("info", &res.infos, ex.any_info, ex.no_info, &ex.info)?;
    let times: Vec<i64> = match (ev.instant, ev.range, ex.range_vector) {
        (Some(_), _, Some((s, e, st))) => {
            (0..).map(|k| s + k * st).take_while(|t| *t <= e).collect()
        }
        (Some(t), _, None) => vec![t],
        (None, Some((s, e, st)), _) => (0..).map(|k| s + k * st).take_while(|t| *t <= e).collect(),
        _ => vec![],
    };
    if ev.instant.is_some() && ex.range_vector.is_none() {
        if let Value::Matrix(_) = res.value {
            return Err("received range result on instant evaluation".into());
        }
    }
    compare(ev, &res.value, &times)?;
    // Instant queries must give the same result as the middle step of a range query.
    // (Functions of the query bounds legitimately differ between the two modes.)
    let bounds_fn = ["start()", "end()", "range()", "step()"]
        .iter()
        .any(|f| ev.query.contains(f));
    if let (Some(t), None, false) = (ev.instant, ex.range_vector, bounds_fn) {
        if matches!(res.value, Value::Vector(_) | Value::Scalar { .. }) {
            let rr = engine
                .range_query(storage, &ev.query, t - 60_000, t + 60_000, 60_000)
                .await
                .map_err(|e| format!("range-mode check failed: {e}"))?;
            let Value::Matrix(m) = rr.value else {
                return Err("range-mode check: not a matrix".into());
            };
            let mut vec = Vec::new();
            for s in m {
                if let Some(p) = s.floats.iter().find(|p| p.t == t) {
                    vec.push(hestia_promql::InstantSample {
                        labels: s.labels.clone(),
                        t,
                        f: p.v,
                        h: None,
                    });
                } else if let Some((_, h)) = s.histograms.iter().find(|p| p.0 == t) {
                    vec.push(hestia_promql::InstantSample {
                        labels: s.labels.clone(),
                        t,
                        f: 0.0,
                        h: Some(h.clone()),
                    });
                }
            }
            let v = match res.value {
                Value::Scalar { .. } => Value::Scalar {
                    t,
                    v: vec.first().map(|s| s.f).unwrap_or(f64::NAN),
                },
                _ => Value::Vector(vec),
            };
            let unordered = Eval {
                line: ev.line,
                query: ev.query.clone(),
                instant: ev.instant,
                range: None,
                expect: Expect {
                    ordered: false,
                    string: ex.string.clone(),
                    ..Default::default()
                },
                scalar: ev.scalar,
                series: ev.series.clone(),
            };
            compare(&unordered, &v, &[t]).map_err(|e| format!("range-mode check: {e}"))?;
        }
    }
    Ok(())
}

struct FileResult {
    passed: usize,
    total: usize,
    skipped: usize,
    skips: Vec<String>,
    failures: Vec<String>,
}

async fn run_file(path: &Path, name: &str) -> FileResult {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut r = FileResult {
        passed: 0,
        total: 0,
        skipped: 0,
        skips: Vec::new(),
        failures: Vec::new(),
    };
    let cmds = match parse_file(&text) {
        Ok(c) => c,
        Err(e) => {
            r.total = 1;
            r.failures.push(format!("{name}: parse error: {e}"));
            return r;
        }
    };
    let opts = EngineOptions {
        enable_experimental_functions: true,
        max_points_per_series: None,
        enable_type_and_unit_labels: name == "type_and_unit",
        ..Default::default()
    };
    let engine = Engine::new(opts);
    let mut storage = MemoryStorage::new();
    for c in cmds {
        match c {
            Cmd::Clear => storage.clear(),
            Cmd::Load {
                interval,
                nhcb,
                series,
            } => load(&mut storage, interval, nhcb, &series),
            Cmd::Eval(ev) => {
                r.total += 1;
                let reason = SKIP
                    .iter()
                    .find(|(f, l, _)| *f == name && *l == ev.line)
                    .map(|x| x.2);
                if let Some(reason) = reason {
                    r.skipped += 1;
                    r.skips
                        .push(format!("SKIP {name}:{} `{}`: {reason}", ev.line, ev.query));
                    continue;
                }
                match run_eval(&engine, &storage, &ev).await {
                    Ok(()) => r.passed += 1,
                    Err(e) => r
                        .failures
                        .push(format!("{name}:{} `{}`: {e}", ev.line, ev.query)),
                }
            }
        }
    }
    r
}

#[tokio::test]
async fn promql_conformance() {
    let dir = conformance_dir();
    let verbose = std::env::var("CONFORMANCE_VERBOSE").is_ok();
    let only = std::env::var("CONFORMANCE_FILE").ok();
    let mut below = Vec::new();
    let mut summary = String::new();
    for (files, stable) in [(STABLE, true), (EXPERIMENTAL, false)] {
        for name in files {
            if only.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let path = dir.join(format!("{name}.test"));
            let r = run_file(&path, name).await;
            let tag = if stable {
                ""
            } else {
                " (experimental, not asserted)"
            };
            let skip = if r.skipped > 0 {
                format!(", {} skipped", r.skipped)
            } else {
                String::new()
            };
            let _ = writeln!(summary, "{name}: {}/{}{skip}{tag}", r.passed, r.total);
            if verbose || (stable && only.is_some()) {
                for f in &r.failures {
                    println!("FAIL {f}");
                }
            }
            // Known gaps are always listed so they cannot go unnoticed.
            for sk in &r.skips {
                if stable || verbose {
                    println!("{sk}");
                }
            }
            if stable && r.passed < r.total {
                below.push(name.to_string());
            }
        }
    }
    println!("{summary}");
    assert!(
        below.is_empty(),
        "stable conformance files below 100%: {below:?}"
    );
}
