//! Splitting a query string into statements and parsing each one on its own, within bounds, so that
//! one statement sqlparser cannot read leaves its neighbours judged normally.

use sqlparser::{
    ast::Statement,
    dialect::PostgreSqlDialect,
    parser::Parser,
    tokenizer::{Token, TokenWithSpan, Tokenizer},
};

/// Statements longer than this are not parsed (they are `unknown`).
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// sqlparser's nesting limit (expressions, subqueries); deeper statements are `unknown`.
pub const RECURSION_LIMIT: usize = 100;

/// One statement of a query string.
pub(crate) struct Piece {
    /// Its tokens (comments and whitespace included), without the closing `;`.
    pub tokens: Vec<TokenWithSpan>,
    /// The parsed statement; `None` when it did not parse, was too long or parsed into other than
    /// exactly one statement.
    pub parsed: Option<Statement>,
}

/// The statements of `sql`; `None` when the text cannot even be tokenized (an unterminated quote).
pub(crate) fn split(sql: &str) -> Option<Vec<Piece>> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location().ok()?;
    let long_input = sql.len() > MAX_STATEMENT_BYTES;
    let mut pieces = Vec::new();
    let mut current = Vec::new();
    for tok in tokens {
        match tok.token {
            Token::SemiColon => pieces.push(std::mem::take(&mut current)),
            Token::EOF => {}
            _ => current.push(tok),
        }
    }
    pieces.push(current);
    for p in &mut pieces {
        drop_only_keyword(p);
    }
    Some(
        pieces
            .into_iter()
            .filter(|p| p.iter().any(|t| !matches!(t.token, Token::Whitespace(_))))
            .map(|tokens| {
                let too_long = long_input && text_len(&tokens) > MAX_STATEMENT_BYTES;
                let parsed = if too_long {
                    None
                } else {
                    parse_tokens(tokens.clone())
                };
                Piece { tokens, parsed }
            })
            .collect(),
    )
}

/// sqlparser 0.63 reads `FROM ONLY t` / `UPDATE ONLY t` as a table named `only` aliased `t`. `ONLY`
/// (skip inheritance children) only narrows what the statement touches, so it is dropped before
/// parsing; `ONLY` is reserved in PostgreSQL, so an unquoted one is never a name.
fn drop_only_keyword(tokens: &mut Vec<TokenWithSpan>) {
    let mut prev: Option<Token> = None;
    tokens.retain(|t| {
        if matches!(t.token, Token::Whitespace(_)) {
            return true;
        }
        let is_only = matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("only"));
        let after = match &prev {
            Some(Token::Word(w)) => {
                w.quote_style.is_none() && ["from", "update", "join"].iter().any(|k| w.value.eq_ignore_ascii_case(k))
            }
            Some(Token::Comma) => true,
            _ => false,
        };
        prev = Some(t.token.clone());
        !(is_only && after)
    });
}

/// Parses tokens that hold exactly one statement.
pub(crate) fn parse_tokens(tokens: Vec<TokenWithSpan>) -> Option<Statement> {
    let dialect = PostgreSqlDialect {};
    let mut stmts = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .ok()?;
    if stmts.len() == 1 { stmts.pop() } else { None }
}

/// The length of the text the tokens stand for (only computed for very long inputs).
fn text_len(tokens: &[TokenWithSpan]) -> usize {
    tokens.iter().map(|t| t.token.to_string().len()).sum()
}

/// Only the meaningful tokens (no whitespace or comments).
pub(crate) fn significant(tokens: &[TokenWithSpan]) -> Vec<&Token> {
    tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect()
}
