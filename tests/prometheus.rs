//! The Prometheus files tracer ships (`tracer/dist/`): the alert rules pass `promtool
//! check rules` and their unit tests (`promtool test rules`), each alert has a case that
//! fires it and one where it stays quiet, and every panel of the Grafana dashboard has a
//! query. (The rules' and the panels' queries are run against a real daemon scraped by a
//! real Prometheus in tests/daemon.rs.) Without promtool, a run outside CI skips; in CI
//! (CI set) it fails.

use std::{collections::HashSet, process::Command};

mod common;
use common::{alert_names, dashboard_queries, dist};

/// promtool with these arguments: (success, what it printed); None when it is not
/// installed (outside CI).
fn promtool(args: &[&str]) -> Option<(bool, String)> {
    match Command::new("promtool").args(args).output() {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool: {e} (scripts/setup.sh installs it, with Debian's prometheus)"
            );
            eprintln!("skipped: promtool is not installed");
            None
        }
    }
}

fn read(file: &str) -> String {
    let path = dist(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = dist("tracer-alerts.yml");
    let Some((ok, said)) = promtool(&["check", "rules", rules.to_str().unwrap()]) else {
        return;
    };
    assert!(ok, "promtool check rules:\n{said}");
    let alerts = alert_names(&read("tracer-alerts.yml"));
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "promtool found every alert of {alerts:?}:\n{said}"
    );
    let tests = dist("tracer-alerts.test.yml");
    let (ok, said) = promtool(&["test", "rules", tests.to_str().unwrap()]).unwrap();
    assert!(
        ok && said.contains("SUCCESS"),
        "promtool test rules:\n{said}"
    );
}

/// The alerts of the unit tests' `alert_rule_test` cases, each with whether it is
/// expected to fire there (`exp_alerts:` with entries) or not (`exp_alerts: []`).
fn rule_test_cases(tests: &str) -> Vec<(String, bool)> {
    let mut cases = Vec::new();
    let mut alert = None;
    for line in tests.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            alert = Some(name.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
            let name = alert.take().expect("exp_alerts follows its alertname");
            cases.push((name, rest.trim() != "[]"));
        }
    }
    cases
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let alerts = alert_names(&read("tracer-alerts.yml"));
    assert!(alerts.len() >= 6, "{alerts:?}");
    let unique: HashSet<_> = alerts.iter().collect();
    assert_eq!(unique.len(), alerts.len(), "alert names repeat: {alerts:?}");
    let cases = rule_test_cases(&read("tracer-alerts.test.yml"));
    for (name, _) in &cases {
        // promtool passes a case of an alert that does not exist, expected quiet.
        assert!(
            alerts.contains(name),
            "the tests name {name}, which tracer-alerts.yml does not define"
        );
    }
    for alert in &alerts {
        for firing in [true, false] {
            assert!(
                cases.contains(&(alert.clone(), firing)),
                "{alert} has no case where it {}",
                if firing { "fires" } else { "stays quiet" }
            );
        }
    }
}

#[test]
fn every_dashboard_panel_has_a_query_of_tracer_s_series() {
    let text = read("tracer-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("tracer-dashboard.json: {e}"));
    let queries = dashboard_queries(&dashboard).unwrap();
    assert!(queries.len() >= 10, "{queries:?}");
    for (panel, query) in &queries {
        assert!(query.contains("tracer_"), "{panel}: {query}");
    }
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: HashSet<_> = panels.iter().map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for p in panels {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{}: the dashboard's data source variable",
            p["title"]
        );
    }
}

#[test]
fn dashboard_queries_say_what_is_wrong_with_a_panel() {
    let no_targets = serde_json::json!({"panels": [{"title": "Execs", "type": "timeseries"}]});
    assert_eq!(
        dashboard_queries(&no_targets).unwrap_err(),
        "panel \"Execs\" has no targets"
    );
    let no_expr = serde_json::json!({"panels": [{"title": "Row", "type": "row", "panels": [
        {"title": "Drops", "targets": [{"refId": "A"}]}]}]});
    assert!(
        dashboard_queries(&no_expr)
            .unwrap_err()
            .starts_with("a target of panel \"Drops\" has no expr"),
    );
    let nested = serde_json::json!({"panels": [{"title": "Row", "type": "row", "panels": [
        {"title": "Drops", "targets": [{"expr": "tracer_events_dropped_total"}]}]}]});
    assert_eq!(
        dashboard_queries(&nested).unwrap(),
        [("Drops".to_owned(), "tracer_events_dropped_total".to_owned())]
    );
}

#[test]
fn grafana_variables_are_replaced_and_an_unknown_one_refused() {
    let vars = [("__rate_interval", "1m"), ("instance", "127.0.0.1:9")];
    assert_eq!(
        common::with_variables("rate(x{instance=~\"$instance\"}[$__rate_interval])", &vars)
            .unwrap(),
        "rate(x{instance=~\"127.0.0.1:9\"}[1m])"
    );
    assert_eq!(
        common::with_variables("x[$__range]", &vars).unwrap_err(),
        "unknown variable $__range in x[$__range]"
    );
}
