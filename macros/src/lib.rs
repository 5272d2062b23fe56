//! The attribute macros of [bobine](https://docs.rs/bobine): `#[bobine::main]` and
//! `#[bobine::test]`. Use them through `bobine`, which re-exports both; their documentation
//! is there.
//!
//! Both rewrite a function's body into the main task of a runtime:
//!
//! ```text
//! #[bobine::main(domains = 2)]            fn main() -> R {
//! fn main() -> R { BODY }          ==>        ::bobine::Builder::new().domains(2).run(move || BODY)
//!                                          }
//! ```
//!
//! An `async fn` becomes a plain one whose main task runs `::bobine::block_on(async move BODY)`.
//! `#[bobine::test]` does the same and adds `#[test]`.
//!
//! The macros are written against `proc_macro` alone (no `syn`, no `quote`): a function item
//! is attributes, a visibility, qualifiers, `fn`, a name, parameters, an optional return type
//! and a brace-delimited body, and only the qualifiers, the parameters and the body need to be
//! found. Mistakes are reported with `compile_error!` at the offending tokens, and the item is
//! then left as written so that no second error hides the first.

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// Runs the function as the main task of a new bobine runtime.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Main, args, item)
}

/// Runs the test function as the main task of a new bobine runtime.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Test, args, item)
}

#[derive(Clone, Copy)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn attribute(self) -> &'static str {
        match self {
            Kind::Main => "#[bobine::main]",
            Kind::Test => "#[bobine::test]",
        }
    }
}

/// A mistake in the attribute or the item: what to say, and where.
struct Error {
    message: String,
    span: Span,
}

impl Error {
    fn new(span: Span, message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            span,
        }
    }

    /// `::core::compile_error!("…");` pointing at the mistake.
    fn to_tokens(&self) -> TokenStream {
        let mut message = Literal::string(&self.message);
        message.set_span(self.span);
        let mut args = Group::new(Delimiter::Parenthesis, TokenTree::Literal(message).into());
        args.set_span(self.span);
        let mut tokens = path(&["core", "compile_error"], self.span);
        tokens.extend([
            TokenTree::Punct(spanned(Punct::new('!', Spacing::Alone), self.span)),
            TokenTree::Group(args),
            TokenTree::Punct(spanned(Punct::new(';', Spacing::Alone), self.span)),
        ]);
        tokens
    }
}

fn spanned(mut punct: Punct, span: Span) -> Punct {
    punct.set_span(span);
    punct
}

/// `::a::b::…` with every token at `span`.
fn path(segments: &[&str], span: Span) -> TokenStream {
    let mut tokens = TokenStream::new();
    for segment in segments {
        tokens.extend([
            TokenTree::Punct(spanned(Punct::new(':', Spacing::Joint), span)),
            TokenTree::Punct(spanned(Punct::new(':', Spacing::Alone), span)),
            TokenTree::Ident(Ident::new(segment, span)),
        ]);
    }
    tokens
}

fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    match options(kind, args).and_then(|options| rewrite(kind, &options, item.clone())) {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut tokens = error.to_tokens();
            tokens.extend(item);
            tokens
        }
    }
}

/// The runtime settings the attribute may give, each a `Builder` method taking one value.
const OPTIONS: [&str; 2] = ["domains", "stack_size"];

/// One `name = value` of the attribute: the `Builder` method, and the value's tokens (any
/// expression: `2`, `64 * 1024`, a constant).
struct Setting {
    name: Ident,
    value: TokenStream,
}

/// Parses `name = value, …`.
fn options(kind: Kind, args: TokenStream) -> Result<Vec<Setting>, Error> {
    let usage = format!(
        "{} takes `domains = N` and `stack_size = BYTES`, separated by commas",
        kind.attribute()
    );
    let mut settings: Vec<Setting> = Vec::new();
    let mut tokens = args.into_iter().peekable();
    while let Some(first) = tokens.next() {
        let TokenTree::Ident(name) = first else {
            return Err(Error::new(first.span(), usage));
        };
        let key = name.to_string();
        if !OPTIONS.contains(&key.as_str()) {
            return Err(Error::new(
                name.span(),
                format!("unknown option `{key}`: {usage}"),
            ));
        }
        if settings.iter().any(|s| s.name.to_string() == key) {
            return Err(Error::new(name.span(), format!("`{key}` is given twice")));
        }
        match tokens.next() {
            Some(TokenTree::Punct(p)) if p.as_char() == '=' => {}
            other => {
                let span = other.map_or(name.span(), |t| t.span());
                return Err(Error::new(span, format!("expected `{key} = value`")));
            }
        }
        let mut value = TokenStream::new();
        while let Some(t) = tokens.next_if(|t| !is_punct(t, ',')) {
            value.extend([t]);
        }
        if value.is_empty() {
            return Err(Error::new(name.span(), format!("`{key}` has no value")));
        }
        tokens.next(); // the comma, if any
        settings.push(Setting { name, value });
    }
    Ok(settings)
}

fn is_punct(t: &TokenTree, c: char) -> bool {
    matches!(t, TokenTree::Punct(p) if p.as_char() == c)
}

fn is_ident(t: &TokenTree, name: &str) -> bool {
    matches!(t, TokenTree::Ident(i) if i.to_string() == name)
}

/// Rewrites the function item (see the crate doc).
fn rewrite(kind: Kind, settings: &[Setting], item: TokenStream) -> Result<TokenStream, Error> {
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let Some(fn_at) = tokens.iter().position(|t| is_ident(t, "fn")) else {
        return Err(Error::new(
            Span::call_site(),
            format!("{} applies to a function", kind.attribute()),
        ));
    };
    let body = match tokens.pop() {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => g,
        other => {
            let span = other.map_or(Span::call_site(), |t| t.span());
            return Err(Error::new(span, "expected the function's body"));
        }
    };
    // The qualifiers sit between the visibility and `fn`; `async` is the one this rewrite
    // removes, and a `const` or `unsafe` main task would make no sense.
    let mut is_async = false;
    for t in &tokens[..fn_at] {
        if is_ident(t, "async") {
            is_async = true;
        } else if is_ident(t, "const") || is_ident(t, "unsafe") || is_ident(t, "extern") {
            return Err(Error::new(
                t.span(),
                format!("{} does not apply to a `{t}` function", kind.attribute()),
            ));
        }
    }
    if is_async {
        tokens.retain(|t| !is_ident(t, "async"));
    }
    let fn_at = tokens
        .iter()
        .position(|t| is_ident(t, "fn"))
        .expect("`fn` is still there");
    let name = tokens.get(fn_at + 1).cloned();
    match tokens.get(fn_at + 2) {
        Some(TokenTree::Group(params)) if params.delimiter() == Delimiter::Parenthesis => {
            if !params.stream().is_empty() {
                return Err(Error::new(
                    params.span(),
                    format!(
                        "{} applies to a function without parameters",
                        kind.attribute()
                    ),
                ));
            }
        }
        Some(t) if is_punct(t, '<') => {
            return Err(Error::new(
                t.span(),
                format!(
                    "{} applies to a function without generics",
                    kind.attribute()
                ),
            ));
        }
        _ => {
            let span = name.map_or(Span::call_site(), |t| t.span());
            return Err(Error::new(span, "expected the function's parameters"));
        }
    }

    let site = Span::call_site();
    let mut task_body = TokenStream::new();
    if is_async {
        // ::bobine::block_on(async move BODY)
        task_body.extend(path(&["bobine", "block_on"], site));
        let mut future = TokenStream::new();
        future.extend([
            TokenTree::Ident(Ident::new("async", site)),
            TokenTree::Ident(Ident::new("move", site)),
            TokenTree::Group(body.clone()),
        ]);
        task_body.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, future))]);
    } else {
        task_body.extend([TokenTree::Group(body.clone())]);
    }

    // ::bobine::Builder::new()<.setting(value)>*.run(move || TASK_BODY)
    let mut call = path(&["bobine", "Builder", "new"], site);
    call.extend([TokenTree::Group(Group::new(
        Delimiter::Parenthesis,
        TokenStream::new(),
    ))]);
    for setting in settings {
        call.extend([
            TokenTree::Punct(Punct::new('.', Spacing::Alone)),
            TokenTree::Ident(setting.name.clone()),
            TokenTree::Group(Group::new(Delimiter::Parenthesis, setting.value.clone())),
        ]);
    }
    let mut closure = TokenStream::new();
    closure.extend([
        TokenTree::Ident(Ident::new("move", site)),
        TokenTree::Punct(Punct::new('|', Spacing::Joint)),
        TokenTree::Punct(Punct::new('|', Spacing::Alone)),
    ]);
    closure.extend(task_body);
    call.extend([
        TokenTree::Punct(Punct::new('.', Spacing::Alone)),
        TokenTree::Ident(Ident::new("run", site)),
        TokenTree::Group(Group::new(Delimiter::Parenthesis, closure)),
    ]);
    let mut new_body = Group::new(Delimiter::Brace, call);
    new_body.set_span(body.span());

    let mut out = TokenStream::new();
    if let Kind::Test = kind {
        // #[::core::prelude::v1::test]
        let mut attr = path(&["core", "prelude", "v1", "test"], site);
        attr = TokenStream::from_iter([TokenTree::Group(Group::new(Delimiter::Bracket, attr))]);
        out.extend([TokenTree::Punct(Punct::new('#', Spacing::Alone))]);
        out.extend(attr);
    }
    out.extend(tokens);
    out.extend([TokenTree::Group(new_body)]);
    Ok(out)
}
