//! Topic scoping from component metadata, with daprd's rules: `allowedTopics` limits every
//! app; `publishingScopes` / `subscriptionScopes` (`app1=t1,t2;app2=t3`) limit the apps they
//! name; a topic in `protectedTopics` needs an explicit scope.

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct TopicScopes {
    allowed: Option<Vec<String>>,
    protected: Vec<String>,
    publishing: HashMap<String, Vec<String>>,
    subscription: HashMap<String, Vec<String>>,
}

impl TopicScopes {
    pub fn from_metadata(metadata: &[(String, String)]) -> Self {
        let value = |key: &str| {
            metadata
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.trim().is_empty())
        };
        Self {
            allowed: value("allowedTopics").map(list),
            protected: value("protectedTopics").map(list).unwrap_or_default(),
            publishing: value("publishingScopes").map(per_app).unwrap_or_default(),
            subscription: value("subscriptionScopes").map(per_app).unwrap_or_default(),
        }
    }

    pub fn may_publish(&self, app_id: &str, topic: &str) -> bool {
        self.allows(topic, self.publishing.get(app_id))
    }

    pub fn may_subscribe(&self, app_id: &str, topic: &str) -> bool {
        self.allows(topic, self.subscription.get(app_id))
    }

    fn allows(&self, topic: &str, scoped: Option<&Vec<String>>) -> bool {
        if let Some(allowed) = &self.allowed {
            if !allowed.iter().any(|t| t == topic) {
                return false;
            }
        }
        let protected = self.protected.iter().any(|t| t == topic);
        match scoped {
            // An app the scopes do not name is limited only by protection.
            None => !protected,
            Some(topics) => topics.iter().any(|t| t == topic),
        }
    }
}

fn list(text: &str) -> Vec<String> {
    text.split(',').map(|t| t.trim().to_owned()).collect()
}

/// `app1=t1,t2;app2=` → app1: [t1, t2], app2: [""] (so app2 may use no topic).
fn per_app(text: &str) -> HashMap<String, Vec<String>> {
    text.split(';')
        .filter_map(|entry| entry.split_once('='))
        .map(|(app, topics)| (app.trim().to_owned(), list(topics)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::TopicScopes;

    fn scopes(pairs: &[(&str, &str)]) -> TopicScopes {
        let metadata: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TopicScopes::from_metadata(&metadata)
    }

    #[test]
    fn daprd_scoping_rules() {
        let none = scopes(&[]);
        assert!(none.may_publish("any", "t") && none.may_subscribe("any", "t"));

        let s = scopes(&[
            ("publishingScopes", "app1=orders,refunds;app2="),
            ("subscriptionScopes", "app1=orders"),
            ("protectedTopics", "secret"),
        ]);
        assert!(s.may_publish("app1", "orders"));
        assert!(!s.may_publish("app1", "other"));
        assert!(!s.may_publish("app2", "orders"), "app2= means no topic");
        assert!(
            s.may_publish("app3", "orders"),
            "unnamed apps are not limited"
        );
        assert!(!s.may_publish("app3", "secret"), "protected needs a scope");
        assert!(s.may_subscribe("app1", "orders") && !s.may_subscribe("app1", "refunds"));

        let allowed = scopes(&[("allowedTopics", "a, b")]);
        assert!(allowed.may_publish("x", "b") && !allowed.may_publish("x", "c"));
    }
}
