//! Source positions of AST nodes (promql-parser's AST carries none), for annotation texts.
//!
//! Nodes are matched to lexer tokens in source order: every node starts with a token of a known
//! kind (a metric name, `{`, a function name, an aggregator, a number, …) at or after its
//! parent's start, and children follow their parent's first token.

use std::collections::HashMap;

use lrpar::{Lexeme, Lexer};
use promql_parser::parser::token::{
    T_ADD, T_IDENTIFIER, T_LEFT_BRACE, T_LEFT_PAREN, T_METRIC_IDENTIFIER, T_NUMBER, T_STRING, T_SUB,
};
use promql_parser::parser::{Expr, VectorSelector};

/// `line:column` (1-based) of each node, keyed by the node's address.
pub(crate) type Positions = HashMap<usize, (usize, usize)>;

pub(crate) fn expr_key(e: &Expr) -> usize {
    e as *const Expr as usize
}

struct Tok {
    id: u16,
    start: usize,
    end: usize,
}

pub(crate) fn compute(query: &str, expr: &Expr) -> Positions {
    let mut out = Positions::new();
    let Ok(lx) = promql_parser::parser::lexer(query) else {
        return out;
    };
    let toks: Vec<Tok> = lx
        .iter()
        .filter_map(|l| l.ok())
        .map(|l| Tok {
            id: l.tok_id(),
            start: l.span().start(),
            end: l.span().end(),
        })
        .collect();
    let mut w = Walker {
        q: query,
        toks,
        out: &mut out,
    };
    w.walk(expr, 0);
    out
}

struct Walker<'a> {
    q: &'a str,
    toks: Vec<Tok>,
    out: &'a mut Positions,
}

impl Walker<'_> {
    fn find(&self, from: usize, pred: impl Fn(&Tok, &str) -> bool) -> Option<usize> {
        (from..self.toks.len()).find(|&i| {
            let t = &self.toks[i];
            pred(t, self.q.get(t.start..t.end).unwrap_or(""))
        })
    }

    fn record(&mut self, e: &Expr, tok: usize) {
        let Some(t) = self.toks.get(tok) else {
            return;
        };
        let before = &self.q[..t.start.min(self.q.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map(|i| t.start - i - 1)
            .unwrap_or(t.start)
            + 1;
        self.out.insert(expr_key(e), (line, col));
    }

    fn selector_tok(&self, vs: &VectorSelector, from: usize) -> Option<usize> {
        match &vs.name {
            Some(n) => self.find(from, |t, s| {
                (t.id == T_IDENTIFIER || t.id == T_METRIC_IDENTIFIER) && s == n
            }),
            None => self.find(from, |t, _| t.id == T_LEFT_BRACE),
        }
    }

    /// Records `e` and its children; returns the token index where `e` starts.
    fn walk(&mut self, e: &Expr, from: usize) -> usize {
        let tok = match e {
            Expr::Binary(b) => {
                let s = self.walk(&b.lhs, from);
                self.record(e, s);
                self.walk(&b.rhs, s + 1);
                return s;
            }
            Expr::Subquery(sq) => {
                let s = self.walk(&sq.expr, from);
                self.record(e, s);
                return s;
            }
            Expr::Aggregate(a) => {
                let id = a.op.id();
                let s = self.find(from, |t, _| t.id == id).unwrap_or(from);
                self.record(e, s);
                let mut next = s + 1;
                if let Some(p) = &a.param {
                    next = self.walk(p, next) + 1;
                }
                self.walk(&a.expr, next);
                return s;
            }
            Expr::Call(c) => {
                let name = c.func.name;
                let s = self
                    .find(from, |t, txt| t.id == T_IDENTIFIER && txt == name)
                    .unwrap_or(from);
                self.record(e, s);
                if let Some(p) = self.out.get(&expr_key(e)).copied() {
                    self.out
                        .insert(c as *const promql_parser::parser::Call as usize, p);
                }
                let mut next = s + 1;
                for a in &c.args.args {
                    next = self.walk(a, next) + 1;
                }
                return s;
            }
            Expr::Paren(p) => {
                let s = self.find(from, |t, _| t.id == T_LEFT_PAREN).unwrap_or(from);
                self.record(e, s);
                self.walk(&p.expr, s + 1);
                return s;
            }
            Expr::Unary(u) => {
                let s = self
                    .find(from, |t, _| t.id == T_SUB || t.id == T_ADD)
                    .unwrap_or(from);
                self.record(e, s);
                self.walk(&u.expr, s + 1);
                return s;
            }
            Expr::VectorSelector(vs) => self.selector_tok(vs, from),
            Expr::MatrixSelector(ms) => self.selector_tok(&ms.vs, from),
            Expr::NumberLiteral(n) => self.find(from, |t, _| t.id == T_NUMBER).map(|i| {
                // A negative literal starts at its sign.
                if n.val.is_sign_negative() && i > 0 && self.toks[i - 1].id == T_SUB {
                    i - 1
                } else {
                    i
                }
            }),
            Expr::StringLiteral(_) => self.find(from, |t, _| t.id == T_STRING),
            Expr::Extension(_) => None,
        };
        let s = tok.unwrap_or(from);
        self.record(e, s);
        s
    }
}
