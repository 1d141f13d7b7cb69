//! PostgreSQL statements sqlparser 0.63 cannot parse, recognized by their leading keywords where the
//! keywords alone say what the statement does. Anything else stays `unknown` (fail closed).

use sqlparser::{
    ast::Ident,
    tokenizer::{Token, TokenWithSpan, Word},
};

use super::{
    classify::classify,
    effects::{Effects, Operation, RelationName, SessionChange},
    names,
    split::{parse_tokens, significant},
};

/// The effects of a statement that did not parse, from its tokens.
pub(crate) fn classify_tokens(tokens: &[TokenWithSpan]) -> Effects {
    let sig = significant(tokens);
    let words: Vec<String> = sig.iter().take(4).map(|t| keyword(t)).collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let only = |ops: &[Operation]| Effects {
        operations: ops.iter().copied().collect(),
        ..Effects::default()
    };
    match (w(0), w(1)) {
        ("do", _) => only(&[Operation::Do]),
        ("checkpoint", _) if sig.len() == 1 => only(&[Operation::Utility]),
        ("cluster" | "reindex", _) => only(&[Operation::Utility]),
        ("prepare", "transaction") | ("commit" | "rollback", "prepared") => only(&[Operation::Transaction]),
        ("grant" | "revoke", _) => only(&[Operation::Grant]),
        ("create" | "alter" | "drop", "group" | "role" | "user") => only(&[Operation::Role]),
        ("refresh", "materialized") => refresh(&sig),
        ("move", _) => match sig.last().and_then(|t| ident_of(t)) {
            Some(cursor) if sig.len() >= 2 => Effects {
                session: vec![SessionChange::Fetch {
                    cursor: names::ident(&cursor),
                }],
                ..Effects::default()
            },
            _ => Effects::unknown(),
        },
        ("table", _) => table(&sig),
        ("delete" | "update", _) | ("with", _) => current_of(tokens).unwrap_or_else(Effects::unknown),
        _ => Effects::unknown(),
    }
}

/// A token as a lower-case keyword ("" when it is not a word).
fn keyword(t: &Token) -> String {
    match t {
        Token::Word(Word {
            value,
            quote_style: None,
            ..
        }) => value.to_lowercase(),
        _ => String::new(),
    }
}

fn ident_of(t: &Token) -> Option<Ident> {
    match t {
        Token::Word(w) => Some(Ident {
            value: w.value.clone(),
            quote_style: w.quote_style,
            span: sqlparser::tokenizer::Span::empty(),
        }),
        _ => None,
    }
}

/// A dotted name starting at `sig[at]`, and where it ends.
fn dotted_name(sig: &[&Token], at: usize) -> Option<(RelationName, usize)> {
    let mut parts = Vec::new();
    let mut i = at;
    loop {
        parts.push(names::ident(&ident_of(sig.get(i)?)?));
        i += 1;
        if sig.get(i) == Some(&&Token::Period) {
            i += 1;
        } else {
            break;
        }
    }
    let rel = match parts.as_slice() {
        [n] => RelationName::new(None, n),
        [s, n] | [_, s, n] => RelationName::new(Some(s), n),
        _ => return None,
    };
    Some((rel, i))
}

/// `REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH [NO] DATA]`: utility + write of the view.
fn refresh(sig: &[&Token]) -> Effects {
    let mut at = 3;
    if sig.get(2).map(|t| keyword(t)).as_deref() != Some("view") {
        return Effects::unknown();
    }
    if sig.get(at).map(|t| keyword(t)).as_deref() == Some("concurrently") {
        at += 1;
    }
    let Some((rel, end)) = dotted_name(sig, at) else {
        return Effects::unknown();
    };
    let rest: Vec<String> = sig[end..].iter().map(|t| keyword(t)).collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    if !matches!(rest.as_slice(), [] | ["with", "data"] | ["with", "no", "data"]) {
        return Effects::unknown();
    }
    let mut e = Effects::default();
    e.operations.insert(Operation::Utility);
    e.writes.insert(rel);
    e
}

/// `TABLE [ONLY] name [*]`: the same as `SELECT * FROM name`.
fn table(sig: &[&Token]) -> Effects {
    let mut at = 1;
    if sig.get(at).map(|t| keyword(t)).as_deref() == Some("only") {
        at += 1;
    }
    let Some((rel, mut end)) = dotted_name(sig, at) else {
        return Effects::unknown();
    };
    if sig.get(end) == Some(&&Token::Mul) {
        end += 1;
    }
    if end != sig.len() {
        return Effects::unknown();
    }
    let mut e = Effects::default();
    e.operations.insert(Operation::Select);
    e.reads.insert(rel);
    e
}

/// `UPDATE/DELETE ... WHERE CURRENT OF cursor`: parsed with the condition replaced by `TRUE` (the
/// statement touches one row, so its WHERE is not missing).
fn current_of(tokens: &[TokenWithSpan]) -> Option<Effects> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut replaced = false;
    let mut i = 0;
    while i < tokens.len() {
        if keyword(&tokens[i].token) == "current" {
            let rest: Vec<usize> = (i + 1..tokens.len())
                .filter(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
                .take(2)
                .collect();
            if let [of, cursor] = rest.as_slice()
                && keyword(&tokens[*of].token) == "of"
                && ident_of(&tokens[*cursor].token).is_some()
            {
                out.push(TokenWithSpan::wrap(Token::make_keyword("TRUE")));
                replaced = true;
                i = cursor + 1;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    if !replaced {
        return None;
    }
    Some(classify(&parse_tokens(out)?))
}
