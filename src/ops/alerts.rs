//! The alert rule engine.
//!
//! A rule compares one measured [`Signal`] with a threshold. It goes *pending* when the
//! condition first holds, *firing* once it has held for the rule's `for` duration, and
//! *resolved* only when the value has been back past the threshold by the hysteresis margin
//! (10 % of the threshold) for `clear_for` — so a value hovering at the threshold does not
//! flap. Each firing is an [`Alert`] with an id; its resolution updates the same alert.
//!
//! Rules come from [`default_rules`], overridden or extended by `ALERT_RULES` (a JSON array
//! of [`RuleSpec`]); a rule with a default's name replaces it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, QueryOrder, QuerySelect, Set};

use crate::platform::alert_rules::{Comparison, RuleSpec, Signal};
use crate::platform::db::{Db, StoreError};

pub use entity::alert::AlertState;

/// One firing of a rule (SPEC §5's alert object).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Alert {
    pub id: Uuid,
    pub rule: String,
    pub severity: String,
    #[schema(value_type = String)]
    pub state: AlertState,
    /// The value when it fired, then the latest value while firing, then the value that
    /// resolved it.
    pub value: f64,
    pub threshold: f64,
    pub metric: String,
    pub message: String,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

enum RuleState {
    Inactive,
    Pending {
        since: Instant,
    },
    Firing {
        alert: Alert,
        clear_since: Option<Instant>,
    },
}

/// The hysteresis margin: a firing `>` rule resolves below `threshold − margin`.
fn margin(threshold: f64) -> f64 {
    (threshold.abs() * 0.1).max(1e-9)
}

/// Evaluates rules against the latest values and reports state changes.
pub struct Engine {
    rules: Vec<RuleSpec>,
    state: HashMap<String, RuleState>,
    /// How long a firing rule's value must stay clear before it resolves.
    clear_for: Duration,
}

impl Engine {
    pub fn new(rules: Vec<RuleSpec>, clear_for: Duration) -> Self {
        Self {
            rules,
            state: HashMap::new(),
            clear_for,
        }
    }

    pub fn rules(&self) -> &[RuleSpec] {
        &self.rules
    }

    /// Alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .state
            .values()
            .filter_map(|s| match s {
                RuleState::Firing { alert, .. } => Some(alert.clone()),
                _ => None,
            })
            .collect();
        v.sort_by_key(|a| a.started_at);
        v
    }

    /// One evaluation. `value(signal)` is `None` when the signal has no meaning now (e.g.
    /// render fps with no job rendering): the rule then neither fires nor stays pending, and a
    /// firing one counts as clear. Returns the alerts that fired or resolved.
    pub fn evaluate(&mut self, now: Instant, value: impl Fn(Signal) -> Option<f64>) -> Vec<Alert> {
        let mut changes = Vec::new();
        for rule in &self.rules {
            let v = value(rule.metric).filter(|v| v.is_finite() || *v == f64::INFINITY);
            let breached = v.is_some_and(|v| match rule.op {
                Comparison::Above => v > rule.threshold,
                Comparison::Below => v < rule.threshold,
            });
            let clear = v.is_none_or(|v| match rule.op {
                Comparison::Above => v <= rule.threshold - margin(rule.threshold),
                Comparison::Below => v >= rule.threshold + margin(rule.threshold),
            });
            let state = self
                .state
                .entry(rule.name.clone())
                .or_insert(RuleState::Inactive);
            match state {
                RuleState::Inactive if breached => {
                    *state = RuleState::Pending { since: now };
                    // A rule with `for: 0` fires on the same evaluation.
                    if rule.for_s <= 0.0 {
                        let alert = new_alert(rule, v.unwrap_or_default());
                        changes.push(alert.clone());
                        *state = RuleState::Firing {
                            alert,
                            clear_since: None,
                        };
                    }
                }
                RuleState::Inactive => {}
                RuleState::Pending { since } => {
                    if !breached {
                        *state = RuleState::Inactive;
                    } else if now.duration_since(*since).as_secs_f64() >= rule.for_s {
                        let alert = new_alert(rule, v.unwrap_or_default());
                        changes.push(alert.clone());
                        *state = RuleState::Firing {
                            alert,
                            clear_since: None,
                        };
                    }
                }
                RuleState::Firing { alert, clear_since } => {
                    if let Some(v) = v {
                        alert.value = v;
                    }
                    if clear {
                        let since = *clear_since.get_or_insert(now);
                        if now.duration_since(since) >= self.clear_for {
                            let mut done = alert.clone();
                            done.state = AlertState::Resolved;
                            done.resolved_at = Some(crate::platform::db::now());
                            changes.push(done);
                            *state = RuleState::Inactive;
                        }
                    } else {
                        *clear_since = None;
                    }
                }
            }
        }
        changes
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_infinite() {
        "∞".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn new_alert(rule: &RuleSpec, value: f64) -> Alert {
    let op = match rule.op {
        Comparison::Above => ">",
        Comparison::Below => "<",
    };
    let what = if rule.summary.is_empty() {
        rule.name.as_str()
    } else {
        rule.summary.as_str()
    };
    Alert {
        id: Uuid::now_v7(),
        rule: rule.name.clone(),
        severity: rule.severity.as_str().into(),
        state: AlertState::Firing,
        value,
        threshold: rule.threshold,
        metric: rule.metric.as_str().into(),
        message: format!(
            "{what}: {} = {} {op} {} for {}s",
            rule.metric.as_str(),
            fmt_value(value),
            fmt_value(rule.threshold),
            rule.for_s
        ),
        started_at: crate::platform::db::now(),
        resolved_at: None,
    }
}

// ---- the alerts' rows ------------------------------------------------------------------------

/// Records an alert transition: a firing inserts its row, a resolution updates it.
pub async fn save_alert(db: &Db, a: &Alert) -> Result<(), StoreError> {
    use entity::alert;
    let model = alert::ActiveModel {
        id: Set(a.id),
        rule: Set(a.rule.clone()),
        severity: Set(a.severity.clone()),
        state: Set(a.state),
        metric: Set(a.metric.clone()),
        value: Set(if a.value.is_finite() {
            a.value
        } else {
            f64::MAX
        }),
        threshold: Set(a.threshold),
        message: Set(a.message.clone()),
        started_at: Set(a.started_at),
        resolved_at: Set(a.resolved_at),
    };
    alert::Entity::insert(model)
        .on_conflict(
            OnConflict::column(alert::Column::Id)
                .update_columns([
                    alert::Column::State,
                    alert::Column::Value,
                    alert::Column::ResolvedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The most recent alerts (firing and resolved), newest first.
pub async fn recent_alerts(db: &Db, limit: u64) -> Result<Vec<Alert>, StoreError> {
    use entity::alert;
    let rows = alert::Entity::find()
        .order_by_desc(alert::Column::StartedAt)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Alert {
            id: r.id,
            rule: r.rule,
            severity: r.severity,
            state: r.state,
            value: r.value,
            threshold: r.threshold,
            metric: r.metric,
            message: r.message,
            started_at: r.started_at,
            resolved_at: r.resolved_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::alert_rules::{Severity, default_rules, rules_from};

    fn rule(for_s: f64) -> RuleSpec {
        RuleSpec {
            name: "deep".into(),
            metric: Signal::QueueDepth,
            op: Comparison::Above,
            threshold: 10.0,
            for_s,
            severity: Severity::Warning,
            summary: String::new(),
        }
    }

    #[test]
    fn fires_after_for_and_resolves_with_hysteresis() {
        let t0 = Instant::now();
        let s = |x: u64| t0 + Duration::from_secs(x);
        let mut e = Engine::new(vec![rule(5.0)], Duration::from_secs(2));
        assert!(e.evaluate(s(0), |_| Some(11.0)).is_empty(), "pending first");
        assert!(e.evaluate(s(3), |_| Some(12.0)).is_empty());
        let fired = e.evaluate(s(5), |_| Some(13.0));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].state, AlertState::Firing);
        assert_eq!(fired[0].value, 13.0);
        // Hovering just under the threshold (inside the 10 % band) does not resolve.
        for t in 6..20 {
            assert!(e.evaluate(s(t), |_| Some(9.5)).is_empty(), "flapped at {t}");
        }
        assert_eq!(e.firing().len(), 1);
        // Clear for less than clear_for: still firing.
        assert!(e.evaluate(s(20), |_| Some(2.0)).is_empty());
        let resolved = e.evaluate(s(22), |_| Some(1.0));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert_eq!(resolved[0].id, fired[0].id);
        assert!(resolved[0].resolved_at.is_some());
        assert!(e.firing().is_empty());
    }

    #[test]
    fn a_blip_shorter_than_for_never_fires() {
        let t0 = Instant::now();
        let mut e = Engine::new(vec![rule(5.0)], Duration::from_secs(1));
        assert!(e.evaluate(t0, |_| Some(50.0)).is_empty());
        assert!(
            e.evaluate(t0 + Duration::from_secs(2), |_| Some(1.0))
                .is_empty()
        );
        assert!(
            e.evaluate(t0 + Duration::from_secs(6), |_| Some(50.0))
                .is_empty()
        );
        assert!(e.firing().is_empty());
    }

    #[test]
    fn configured_rules_replace_and_extend_defaults() {
        let rules = rules_from(Some(
            r#"[{"name":"queue_backlog","metric":"queue_depth","op":">","threshold":3,"for":1,"severity":"critical"},
                {"name":"busy","metric":"cpu_percent","op":">","threshold":80,"severity":"info"}]"#,
        ))
        .expect("rules");
        let backlog = rules
            .iter()
            .find(|r| r.name == "queue_backlog")
            .expect("backlog");
        assert_eq!(backlog.threshold, 3.0);
        assert_eq!(backlog.severity, Severity::Critical);
        assert_eq!(rules.len(), default_rules().len() + 1);
        assert!(
            rules_from(Some(
                r#"[{"name":"x","metric":"nope","op":">","threshold":1,"severity":"info"}]"#
            ))
            .is_err()
        );
        assert!(rules_from(Some("{}")).is_err());
    }
}
