//! Routing rules: the `match` expressions of `routes.rules`, in CEL (the Common Expression
//! Language), evaluated over the CloudEvent as daprd evaluates them with cel-go.
//!
//! What daprd does, and so what this module does:
//! - The CloudEvent is the variable `event`: `event.type == "order.v2"`,
//!   `event.data.amount > 100 && has(event.data.priority)`, `event.source.startsWith("shop")`.
//!   CEL's standard library is there: `&&`, `||`, `!`, `?:`, comparisons, arithmetic, `in`,
//!   `size`, `has`, the macros (`all`, `exists`, `exists_one`, `map`, `filter`), the conversions
//!   (`int`, `uint`, `double`, `string`, `bytes`, `bool`, `dyn`, `type`), `contains`,
//!   `startsWith`, `endsWith` and `matches`. cel-go's extension libraries (`lowerAscii`, `split`,
//!   optional values, ...) are not: daprd does not enable them.
//! - An empty (or blank) expression always matches.
//! - An expression is parsed once, when the subscription is read. A syntax error, a call to a
//!   function the standard library does not have, or a `matches` pattern that is not a valid
//!   regex refuses the rule with a message naming the expression. Other mistakes only show
//!   when an event is evaluated (cel-go's type checker finds a few of them up front, e.g.
//!   `event.type.startsWith(1)`; here they fail on every event).
//! - Evaluation can fail: a field the event does not have (`event.data.missing == 1`; test it
//!   with `has(event.data.missing)` first), a type mismatch (`event.type > 1`), a result that is
//!   not a bool (`event.type`: daprd only refuses that when it evaluates it). [`Match::evaluate`]
//!   reports such a failure, as daprd's `matchRoutingRule` does; [`Match::matches`], which the
//!   route lookup uses, logs it and counts the rule as not matching. (daprd stops at that rule
//!   instead: the event goes to the dead-letter topic if there is one, else back to the broker
//!   for redelivery.) `||` and `&&` absorb an error as cel-go does:
//!   `event.data.missing == 1 || true` holds, `event.data.missing == 1 && false` does not.
//! - The event is JSON decoded the way Go's `encoding/json` decodes into `map[string]any`:
//!   objects are maps of strings, arrays lists, and every number a `double`. Comparisons mix
//!   numeric types, so for `"amount": 12` both `event.data.amount == 12` and
//!   `event.data.amount > 10` hold; for `"amount": 12.5`, `event.data.amount == 12` is false,
//!   `event.data.amount > 12` true and `int(event.data.amount) == 12` true (it truncates).
//!   Arithmetic does not mix types: `event.data.amount + 1 > 10` fails (no `double + int`),
//!   write `event.data.amount + 1.0` or `int(event.data.amount) + 1`. `type(event.data.amount)`
//!   is `double`, and integers beyond 2^53 lose precision, as in daprd.
//!
//! Where this differs from daprd:
//! - `timestamp()`, `duration()` and their accessors (`getHours()`, ...) are not supported
//!   (refused when the rule is read): they would take the `chrono` and `chrono-tz` crates,
//!   about 2 MB of binary and 1.4 MB resident in every sidecar.
//! - `matches` runs on `regex-lite`: RE2 syntax with ASCII `\d`, `\w`, `\s` and `\b` as Go's
//!   RE2, but no Unicode classes (`\p{L}`) and ASCII-only `(?i)`. A pattern written in the
//!   expression is compiled once, when the rule is read; one computed from the event, on each
//!   evaluation.
//!
//! Evaluation copies no string of the event: the CEL values borrow them. And only what an
//! expression reads is converted: for `event.type == "x" && event.data.amount > 10`, the
//! event's `type` and `data.amount`, whatever else the event and its data hold. A field used as
//! a whole (`size(event.data.items)`, `"x" in event.data`, `event.data == {...}`) is converted
//! with everything below it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use cel::common::ast::{operators, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{
    self as cel_types, CelBool, CelDouble, CelList, CelMap, CelMapKey, CelNull, CelString,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Program};
use regex_lite::Regex;
use serde_json::{Map, Value};

/// The variable the CloudEvent is bound to.
const EVENT: &str = "event";

const MATCHES: &str = "matches";

/// The functions and operators of cel-go's standard library (`common/stdlib/standard.go` of
/// the cel-go daprd builds with), under the names this crate's parser gives them, less the
/// time functions. `has` and the comprehension macros are expanded by the parser and leave
/// only operators behind.
const STANDARD_FUNCTIONS: &[&str] = &[
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::NOT_STRICTLY_FALSE,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::ADD,
    operators::SUBSTRACT,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::NEGATE,
    operators::LESS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::GREATER_EQUALS,
    operators::INDEX,
    operators::IN,
    "size",
    "type",
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "string",
    "uint",
    "contains",
    "endsWith",
    "startsWith",
    MATCHES,
];

/// cel-go's standard functions on timestamps and durations, which blockhost leaves out.
const TIME_FUNCTIONS: &[&str] = &[
    "timestamp",
    "duration",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
];

/// cel-go's default environment: the standard library and macros, no optional syntax, and a
/// map literal that repeats a key keeps the last entry; `matches` is ours.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib().with_optional_support(false);
    env.set_error_on_duplicate_map_keys(false);
    let string = || cel_types::STRING_TYPE;
    // Only fails if `matches` were declared already: it is not without the `regex` feature.
    let declared = env
        .add_overload(MATCHES, "matches", vec![string(), string()], regex_matches)
        .and_then(|()| {
            env.add_member_overload(
                MATCHES,
                "matches_string",
                string(),
                vec![string()],
                regex_matches,
            )
        });
    if let Err(err) = declared {
        tracing::error!("CEL matches() is unavailable: {err}");
    }
    Arc::new(env)
});

/// The patterns of the `matches` calls written in the rules, compiled when the rules were read.
static REGEXES: LazyLock<RwLock<HashMap<String, Regex>>> = LazyLock::new(Default::default);

/// A rule's `match`, parsed.
#[derive(Debug, Clone)]
pub enum Match {
    /// No expression: the rule always applies (a `default` route, or an empty `match`).
    Always,
    Cel(Arc<Compiled>),
}

/// A parsed CEL expression and what it reads of the event.
pub struct Compiled {
    source: String,
    program: Program,
    /// What it reads of the event.
    reads: Reads,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Compiled").field(&self.source).finish()
    }
}

impl Match {
    /// Parses a `match` expression; empty or blank means [`Match::Always`], as in daprd.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let source = expression.trim();
        if source.is_empty() {
            return Ok(Self::Always);
        }
        let invalid = |what: String| format!("invalid match expression '{source}': {what}");
        let program = ENV.compile(source).map_err(|errors| {
            invalid(
                errors
                    .errors
                    .iter()
                    .map(|e| match e.pos {
                        (1, column) => format!("{} at column {column}", e.msg),
                        (line, column) => format!("{} at line {line}, column {column}", e.msg),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let mut usage = Usage::default();
        usage.walk(program.expression());
        if let Some(function) = usage.unknown_function {
            return Err(invalid(if TIME_FUNCTIONS.contains(&function) {
                format!("'{function}': CEL's timestamp and duration functions are not supported")
            } else {
                format!(
                    "undeclared reference to '{function}' (not a function of CEL's standard library)"
                )
            }));
        }
        for pattern in &usage.patterns {
            let compiled = Regex::new(pattern)
                .map_err(|err| invalid(format!("'{pattern}' is not a valid regex: {err}")))?;
            REGEXES
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert((*pattern).to_owned(), compiled);
        }
        let reads = usage.reads;
        Ok(Self::Cel(Arc::new(Compiled {
            source: source.to_owned(),
            program,
            reads,
        })))
    }

    /// Whether the rule applies to `event`. An evaluation that fails is logged and counts as
    /// no match.
    pub fn matches(&self, event: &Value) -> bool {
        self.evaluate(event).unwrap_or_else(|err| {
            let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
            tracing::warn!(
                event_id = %id,
                "routing rule treated as not matching: {err}"
            );
            false
        })
    }

    /// Evaluates the rule against `event` as daprd does: `Err` when the evaluation fails or its
    /// result is not a bool.
    pub fn evaluate(&self, event: &Value) -> Result<bool, String> {
        match self {
            Self::Always => Ok(true),
            Self::Cel(compiled) => compiled.evaluate(event),
        }
    }
}

impl Compiled {
    fn evaluate(&self, event: &Value) -> Result<bool, String> {
        let binding = EventBinding(self.reads.value(event));
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.set_variable_resolver(&binding);
        let result = cel::Value::resolve_val(self.program.expression(), &context)
            .map_err(|err| format!("match expression '{}' failed: {err}", self.source))?;
        result
            .downcast_ref::<CelBool>()
            .map(|b| *b.inner())
            .ok_or_else(|| {
                format!(
                    "the result of match expression '{}' was not a boolean but a {}",
                    self.source,
                    result.get_type().name()
                )
            })
    }
}

/// What an expression reads of a JSON value: all of it (`whole`), or only some fields of an
/// object, by name, and what it reads of each.
#[derive(Debug, Default, PartialEq)]
struct Reads {
    whole: bool,
    fields: Vec<(String, Reads)>,
}

impl Reads {
    /// Notes that the expression uses the value at `path` (field names from here) as a whole.
    fn add(&mut self, path: &[&str]) {
        let mut node = self;
        for name in path {
            if node.whole {
                return;
            }
            let at = match node.fields.iter().position(|(field, _)| field == name) {
                Some(at) => at,
                None => {
                    node.fields.push(((*name).to_owned(), Reads::default()));
                    node.fields.len() - 1
                }
            };
            node = &mut node.fields[at].1;
        }
        node.whole = true;
        node.fields.clear();
    }

    /// `value` as a CEL value, as far as the expression reads it: an object is a map of the
    /// fields it reads (those it has); anything else, or an object read whole, is all there.
    fn value<'a>(&self, value: &'a Value) -> Box<dyn Val + 'a> {
        match value {
            Value::Object(object) if !self.whole => Box::new(CelMap::from(
                self.fields
                    .iter()
                    .filter_map(|(name, reads)| {
                        let (key, value) = object.get_key_value(name.as_str())?;
                        Some((map_key(key), reads.value(value)))
                    })
                    .collect::<HashMap<_, _>>(),
            )),
            _ => to_cel(value),
        }
    }
}

/// Binds `event` without naming it in the context's variable table (no allocation).
struct EventBinding<'a>(Box<dyn Val + 'a>);

impl VariableResolver for EventBinding<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        (variable == EVENT).then(|| CowVal::Borrowed(self.0.as_ref()))
    }
}

/// A JSON value as CEL sees what Go's `encoding/json` decodes: numbers are doubles, strings
/// are borrowed.
fn to_cel(value: &Value) -> Box<dyn Val + '_> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            Box::new(CelList::from(items.iter().map(to_cel).collect::<Vec<_>>()))
        }
        Value::Object(object) => Box::new(map(object)),
    }
}

fn map(object: &Map<String, Value>) -> CelMap<'_> {
    CelMap::from(object.iter().map(entry).collect::<HashMap<_, _>>())
}

fn entry<'a>((key, value): (&'a String, &'a Value)) -> (CelMapKey<'a>, Box<dyn Val + 'a>) {
    (map_key(key), to_cel(value))
}

fn map_key(key: &str) -> CelMapKey<'_> {
    CelMapKey::String(CelString::from(key))
}

/// `matches(text, pattern)`, or `text.matches(pattern)`: whether `pattern` matches anywhere in
/// `text`, as RE2's `MatchString`.
fn regex_matches<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [text, pattern] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let (Some(text), Some(pattern)) = (
        text.downcast_ref::<CelString>(),
        pattern.downcast_ref::<CelString>(),
    ) else {
        return Err(ExecutionError::no_such_overload(
            MATCHES,
            vec![
                text.get_type().name().to_owned(),
                pattern.get_type().name().to_owned(),
            ],
        ));
    };
    let (text, pattern) = (text.inner(), pattern.inner());
    let known = REGEXES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(pattern)
        .map(|regex| regex.is_match(text));
    let matched = match known {
        Some(matched) => matched,
        None => Regex::new(pattern)
            .map_err(|err| {
                ExecutionError::function_error(
                    MATCHES,
                    format!("'{pattern}' is not a valid regex: {err}"),
                )
            })?
            .is_match(text),
    };
    Ok(CowVal::owned(CelBool::from(matched)))
}

/// What an expression does with `event`, any function it calls that is not standard, and the
/// `matches` patterns it spells out.
#[derive(Default)]
struct Usage<'e> {
    reads: Reads,
    unknown_function: Option<&'e str>,
    patterns: Vec<&'e str>,
}

impl<'e> Usage<'e> {
    fn walk(&mut self, expr: &'e IdedExpr) {
        if let Some(path) = event_path(expr) {
            self.reads.add(&path);
            return;
        }
        match &expr.expr {
            Expr::Ident(_) => {}
            Expr::Select(select) => self.walk(&select.operand),
            Expr::Call(call) => {
                let name = call.func_name.as_str();
                if !STANDARD_FUNCTIONS.contains(&name) {
                    self.unknown_function.get_or_insert(name);
                }
                let pattern = match (name, &call.target, call.args.as_slice()) {
                    (MATCHES, Some(_), [pattern]) | (MATCHES, None, [_, pattern]) => Some(pattern),
                    _ => None,
                };
                if let Some(Expr::Literal(LiteralValue::String(pattern))) = pattern.map(|p| &p.expr)
                {
                    self.patterns.push(pattern.inner());
                }
                if let Some(target) = &call.target {
                    self.walk(target);
                }
                call.args.iter().for_each(|arg| self.walk(arg));
            }
            Expr::Comprehension(comprehension) => {
                self.walk(&comprehension.iter_range);
                self.walk(&comprehension.accu_init);
                self.walk(&comprehension.loop_cond);
                self.walk(&comprehension.loop_step);
                self.walk(&comprehension.result);
            }
            Expr::List(list) => list.elements.iter().for_each(|e| self.walk(e)),
            Expr::Map(map) => map.entries.iter().for_each(|e| self.walk_entry(&e.expr)),
            Expr::Struct(object) => object.entries.iter().for_each(|e| self.walk_entry(&e.expr)),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn walk_entry(&mut self, entry: &'e EntryExpr) {
        match entry {
            EntryExpr::MapEntry(entry) => {
                self.walk(&entry.key);
                self.walk(&entry.value);
            }
            EntryExpr::StructField(field) => self.walk(&field.value),
        }
    }
}

/// The field names of `event.a.b`, `event["a"].b`, `has(event.a.b)` (`["a", "b"]`), and of
/// `event` itself (none); `None` for any other expression.
fn event_path(expr: &IdedExpr) -> Option<Vec<&str>> {
    let (operand, field) = match &expr.expr {
        Expr::Ident(name) if name == EVENT => return Some(Vec::new()),
        Expr::Select(select) => (select.operand.as_ref(), select.field.as_str()),
        Expr::Call(call) if call.func_name == operators::INDEX && call.target.is_none() => {
            match call.args.as_slice() {
                [operand, key] => match &key.expr {
                    Expr::Literal(LiteralValue::String(key)) => (operand, key.inner()),
                    _ => return None,
                },
                _ => return None,
            }
        }
        _ => return None,
    };
    let mut path = event_path(operand)?;
    path.push(field);
    Some(path)
}

#[cfg(test)]
mod tests;
