//! Routing rules: the subset of daprd's CEL `match` expressions that routes act on —
//! comparisons of CloudEvent fields with literals, joined by `&&` and `||`:
//! `event.type == "order.v2" && event.data.region != 'eu'`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    Always,
    /// Alternatives (`||`) of conjunctions (`&&`) of comparisons.
    Any(Vec<Vec<Comparison>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    path: Vec<String>,
    equal: bool,
    literal: Value,
}

impl Match {
    pub fn parse(expression: &str) -> Result<Self, String> {
        let expression = expression.trim();
        if expression.is_empty() || expression == "true" {
            return Ok(Self::Always);
        }
        expression
            .split("||")
            .map(|alternative| alternative.split("&&").map(Comparison::parse).collect())
            .collect::<Result<Vec<Vec<_>>, _>>()
            .map(Self::Any)
            .map_err(|err| format!("unsupported match expression '{expression}': {err}"))
    }

    pub fn matches(&self, event: &Value) -> bool {
        match self {
            Self::Always => true,
            Self::Any(alternatives) => alternatives
                .iter()
                .any(|all| all.iter().all(|c| c.holds(event))),
        }
    }
}

impl Comparison {
    fn parse(text: &str) -> Result<Self, String> {
        let (left, right, equal) = if let Some((l, r)) = text.split_once("==") {
            (l, r, true)
        } else if let Some((l, r)) = text.split_once("!=") {
            (l, r, false)
        } else {
            return Err(format!("'{}' is not a comparison (== or !=)", text.trim()));
        };
        let path = left
            .trim()
            .strip_prefix("event.")
            .ok_or_else(|| format!("'{}' does not start with event.", left.trim()))?
            .split('.')
            .map(str::to_owned)
            .collect();
        Ok(Self {
            path,
            equal,
            literal: literal(right.trim())?,
        })
    }

    fn holds(&self, event: &Value) -> bool {
        let found = self
            .path
            .iter()
            .try_fold(event, |value, field| value.get(field));
        let same = match (found, &self.literal) {
            (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Some(value), literal) => value == literal,
            (None, _) => false,
        };
        same == self.equal
    }
}

fn literal(text: &str) -> Result<Value, String> {
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Ok(Value::String(inner.to_owned()));
    }
    serde_json::from_str(text).map_err(|_| format!("'{text}' is not a string, number or boolean"))
}

#[cfg(test)]
mod tests {
    use super::Match;
    use serde_json::json;

    #[test]
    fn comparisons_on_event_fields() {
        let event = json!({"type": "order.v2", "data": {"amount": 12, "region": "eu"}});
        let yes = [
            "",
            "event.type == \"order.v2\"",
            "event.type == 'order.v2' && event.data.amount == 12",
            "event.type == 'x' || event.data.region != \"us\"",
        ];
        for expression in yes {
            assert!(
                Match::parse(expression).unwrap().matches(&event),
                "{expression}"
            );
        }
        let no = [
            "event.type == 'order.v1'",
            "event.missing == 1",
            "event.data.amount != 12.0",
        ];
        for expression in no {
            assert!(
                !Match::parse(expression).unwrap().matches(&event),
                "{expression}"
            );
        }
        assert!(Match::parse("int(event.data.amount) > 10").is_err());
    }
}
