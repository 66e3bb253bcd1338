//! CEL as daprd evaluates it over CloudEvents: cases checked against cel-go's behaviour.
use super::{Match, Reads};
use serde_json::{json, Value};
use std::sync::Arc;

fn order() -> Value {
    json!({
        "id": "1",
        "type": "order.created",
        "source": "shop",
        "time": "2026-11-26T10:00:00Z",
        "data": {"amount": 12, "price": 12.5, "region": "eu", "tags": ["new", "vip"],
                 "customer": {"name": "Ada"}, "note": null, "paid": true}
    })
}

fn check(expressions: &[&str], expected: bool) {
    let event = order();
    for expression in expressions {
        let rule = Match::parse(expression).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rule.matches(&event), expected, "{expression}");
    }
}

#[test]
fn empty_always_matches() {
    check(&["", "   ", "true"], true);
    assert!(matches!(Match::parse(" \t").unwrap(), Match::Always));
    assert!(Match::parse("").unwrap().matches(&json!(null)));
}

#[test]
fn equality_on_strings_and_numbers() {
    check(
        &[
            "event.type == \"order.created\"",
            "event.type == 'order.created'",
            "event.data.region != 'us'",
            "event.data.amount == 12",
            "event.data.amount == 12.0",
            "event.data.amount == 12u",
            "event.data.amount != 13",
            "event.data.paid == true",
            "event.data.note == null",
            "event.data.customer.name == 'Ada'",
            "event['type'] == 'order.created' && event.data['region'] == 'eu'",
            "event.data == {'amount': 12, 'price': 12.5, 'region': 'eu', 'tags': ['new', 'vip'], \
             'customer': {'name': 'Ada'}, 'note': null, 'paid': true}",
        ],
        true,
    );
    check(
        &[
            "event.type == 'order.updated'",
            "event.data.region != 'eu'",
            "event.data.amount == 13",
            // A string is never equal to a number.
            "event.data.amount == '12'",
        ],
        false,
    );
}

#[test]
fn comparisons_and_conversions() {
    check(
        &[
            "event.data.amount > 10",
            "event.data.amount >= 12",
            "event.data.amount < 100",
            "event.data.amount <= 12.0",
            "int(event.data.amount) == 12",
            "int(event.data.amount) + 1 == 13",
            "event.data.amount + 1.0 == 13.0",
            "type(event.data.amount) == double",
            "string(int(event.data.amount)) == '12'",
            "event.type > 'order'",
            "size(event.data.tags) == 2",
            "event.time > '2026-01-01'",
        ],
        true,
    );
    check(&["event.data.amount > 12", "event.data.amount < 12"], false);
}

/// JSON numbers are doubles, as in daprd: 12.5 is not 12, and arithmetic with an int
/// literal fails (no match) where comparisons mix types freely.
#[test]
fn a_json_float_against_int_literals() {
    check(
        &[
            "event.data.price > 12",
            "event.data.price < 13",
            "event.data.price == 12.5",
            "int(event.data.price) == 12",
        ],
        true,
    );
    check(
        &[
            "event.data.price == 12",
            "event.data.price + 1 > 10",
            "event.data.amount * 2 == 24",
        ],
        false,
    );
    let sum = Match::parse("event.data.amount + 1 > 10").unwrap();
    let err = sum.evaluate(&order()).unwrap_err();
    assert!(err.contains("event.data.amount + 1 > 10"), "{err}");
}

#[test]
fn logic_parentheses_in_and_string_functions() {
    check(
        &[
            "has(event.data.amount)",
            "!has(event.data.priority)",
            "has(event.data.customer.name)",
            "!(event.type == 'x')",
            "(event.type == 'x' || event.data.amount > 10) && event.data.region == 'eu'",
            "event.type == 'x' || (event.data.amount > 10 && event.data.region == 'eu')",
            "event.data.region in ['eu', 'uk']",
            "event.data.amount in [11, 12]",
            "'vip' in event.data.tags",
            "'region' in event.data",
            "event.type.startsWith('order.')",
            "event.type.endsWith('.created')",
            "event.source.contains('ho')",
            "event.type.matches('^order\\\\.(created|updated)$')",
            "event.data.tags.exists(t, t == 'vip')",
            "event.data.tags.all(t, size(t) >= 3)",
            "event.data.amount > 100 ? false : true",
            "size(event) == 5",
            "event.data.tags.map(t, t + '!')[0] == 'new!'",
        ],
        true,
    );
    check(
        &[
            "(event.type == 'x' || event.data.amount > 10) && event.data.region == 'us'",
            "!event.type.startsWith('order.')",
            "'gold' in event.data.tags",
            "event.data.amount > 100 && has(event.data.priority)",
        ],
        false,
    );
}

/// A missing field, a type error or an unknown variable fail the evaluation: no match, no
/// panic; `||` and `&&` absorb an error when the other side decides.
#[test]
fn evaluation_errors_do_not_match() {
    let event = order();
    for expression in [
        "event.data.priority == 'high'",
        "event.missing.deeper == 1",
        "event.data.amount > 'ten'",
        "event.type > 1",
        "other == 1",
        "event.data.tags[5] == 'x'",
        "has(event.missing.x)",
    ] {
        let rule = Match::parse(expression).unwrap();
        assert!(rule.evaluate(&event).is_err(), "{expression}");
        assert!(!rule.matches(&event), "{expression}");
    }
    check(&["event.data.priority == 'high' || true"], true);
    check(&["event.data.priority == 'high' && false"], false);
    // An event that is not an object.
    assert!(!Match::parse("event.type == 'x'")
        .unwrap()
        .matches(&json!("just a string")));
}

/// daprd accepts an expression of another type and fails when it evaluates it.
#[test]
fn a_non_bool_result_does_not_match() {
    for expression in ["event.type", "1 + 2", "event.data", "event.data.note"] {
        let rule = Match::parse(expression).unwrap();
        let err = rule.evaluate(&order()).unwrap_err();
        assert!(err.contains("was not a boolean"), "{expression}: {err}");
        assert!(!rule.matches(&order()), "{expression}");
    }
}

#[test]
fn syntax_errors_name_the_expression() {
    for expression in [
        "event.type ==",
        "event.type = 'x'",
        "event.data.amount > 10 &&& true",
        "(event.type == 'x'",
        "event.type == \"unterminated",
    ] {
        let err = Match::parse(expression).unwrap_err();
        assert!(
            err.starts_with(&format!("invalid match expression '{expression}': ")),
            "{err}"
        );
    }
    let err = Match::parse("event.type.startWith('order.')").unwrap_err();
    assert!(err.contains("undeclared reference to 'startWith'"), "{err}");
    let err = Match::parse("event.source.matches('(shop')").unwrap_err();
    assert!(err.contains("'(shop' is not a valid regex"), "{err}");
    let err = Match::parse("timestamp(event.time).getHours() > 8").unwrap_err();
    assert!(
        err.contains("timestamp and duration functions are not supported"),
        "{err}"
    );
    // Extensions daprd does not enable are refused the same way.
    assert!(Match::parse("event.type.lowerAscii() == 'x'").is_err());
    assert!(Match::parse("event.?type == optional.of('x')").is_err());
}

/// `matches` is RE2's unanchored search, with ASCII Perl classes; a pattern taken from the
/// event is compiled when evaluated.
#[test]
fn regex_matches() {
    check(
        &[
            "event.type.matches('^order\\\\.(created|updated)$')",
            "event.type.matches('created')",
            "matches(event.source, '^[a-z]+$')",
            "event.id.matches('^\\\\d+$')",
            "event.data.customer.name.matches('(?i)^ada$')",
            "event.type.matches(event.data.customer.name) == false",
            "event.data.region.matches(event.data.region)",
        ],
        true,
    );
    check(
        &[
            "event.type.matches('^created')",
            // `\d` is ASCII only, as in Go's RE2: not ARABIC-INDIC DIGIT THREE.
            "'\u{663}'.matches('\\\\d')",
        ],
        false,
    );
    // A pattern in the expression is checked when the rule is read, one from the event
    // when it is evaluated.
    assert!(Match::parse("event.type.matches('\\\\p{L}')").is_err());
    let dynamic = Match::parse("event.data.region.matches(event.data.pattern)").unwrap();
    let event = json!({"data": {"region": "eu", "pattern": "["}});
    let err = dynamic.evaluate(&event).unwrap_err();
    assert!(err.contains("'[' is not a valid regex"), "{err}");
}

fn reads(expression: &str) -> Reads {
    match Match::parse(expression).unwrap() {
        Match::Cel(compiled) => Arc::into_inner(compiled).unwrap().reads,
        Match::Always => panic!("not CEL"),
    }
}

fn node(whole: bool, fields: Vec<(&str, Reads)>) -> Reads {
    Reads {
        whole,
        fields: fields.into_iter().map(|(f, r)| (f.to_owned(), r)).collect(),
    }
}

/// Only what an expression reads of the event is converted, and that is enough.
#[test]
fn only_what_is_read_is_converted() {
    let leaf = || node(true, vec![]);
    assert_eq!(
        reads("event.type == 'x' || has(event.data.x) && event['data'].y.z > 1"),
        node(
            false,
            vec![
                ("type", leaf()),
                (
                    "data",
                    node(
                        false,
                        vec![("x", leaf()), ("y", node(false, vec![("z", leaf())]))]
                    )
                )
            ]
        )
    );
    assert_eq!(
        reads("event.data.y.z > 1 && size(event.data) > 1"),
        node(false, vec![("data", leaf())])
    );
    assert_eq!(reads("size(event) == 5 && event.type != ''"), leaf());
    assert_eq!(reads("1 == 1"), Reads::default());
    check(
        &[
            "size(event) == 5 && event.type != ''",
            "'source' in event",
            "event.exists(k, k == 'time')",
            "[1].exists(event, event == 1) && event.type != ''",
            "event.data.customer.name == 'Ada' && size(event.data.customer) == 1",
            "event.data[event.data.region == 'eu' ? 'amount' : 'price'] == 12",
            "event.data.tags[1] == 'vip' && event.data.tags.size() == 2",
            "has(event.data.customer.name) && !has(event.data.customer.age)",
        ],
        true,
    );
    let event = order();
    assert!(!Match::parse("has(event.subject)").unwrap().matches(&event));
    // What is not an object is taken whole, and errs as it would.
    assert!(Match::parse("event.data.region.x == 1")
        .unwrap()
        .evaluate(&event)
        .is_err());
}
