//! The deployment dashboard (`blargh::dashboard`, mounted by examples/hello at `/_blargh`)
//! loaded in a real browser after two real deploys: it shows v2 and its message as the
//! current release, v1 before it, and the host; a screenshot is kept as
//! `target/test-artifacts/dashboard.png`.
//!
//! Needs Debian's Chromium (`apt-get install chromium`); fails, saying so, without it.

use blargh_proto::control::Reply;
use test_support::agent::{AgentOptions, TestAgent};
use test_support::browser::Chromium;
use test_support::hello::{self, Profile};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// The text of `dom` from `start` up to the next `end`.
fn between<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let i = dom
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in the page:\n{dom}"));
    let rest = &dom[i..];
    &rest[..rest.find(end).map_or(rest.len(), |j| j + end.len())]
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_string()
}

#[test]
fn the_dashboard_shows_the_current_and_previous_releases_in_a_browser() {
    let chromium = Chromium::find();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());

    let id1 = agent.receive(&v1, "v1");
    agent.activate(&id1).unwrap();
    // Release ids carry the receive time to the millisecond, and receiving a release
    // takes longer than that: v2's id sorts after v1's (checked below) without waiting.
    let message = "Ship the <dashboard> & say \"hi\"";
    let reply = agent
        .request(&[
            "receive",
            v2.to_str().unwrap(),
            "--app-version",
            "v2",
            "--message",
            message,
        ])
        .unwrap();
    let id2 = match reply {
        Reply::Received { release, .. } => release.id.into_string(),
        other => panic!("receive v2: {other:?}"),
    };
    agent.activate(&id2).unwrap();
    assert!(id2 > id1, "{id2} should sort after {id1}");

    let url = format!("http://127.0.0.1:{}/_blargh/", agent.port());
    let dom = chromium.dump_dom(&url).unwrap();

    // Header: app and host.
    assert!(dom.contains("<h1 id=\"app\">hello</h1>"), "{dom}");
    assert!(
        dom.contains(&format!("<dd id=\"host\">{}</dd>", host_name())),
        "{dom}"
    );
    assert!(!dom.contains("Running outside blargh"), "{dom}");

    // The current release: v2, with its message shown as text (escaped, not markup).
    let current = between(&dom, "id=\"current\"", "</section>");
    assert!(current.contains("Current release"), "{current}");
    assert!(
        current.contains("<div class=\"headline\">v2</div>"),
        "{current}"
    );
    assert!(
        current.contains("Ship the &lt;dashboard&gt; &amp; say \"hi\""),
        "{current}"
    );
    assert!(
        !dom.contains("<dashboard>"),
        "the message became markup:\n{dom}"
    );
    assert!(current.contains(&id2), "{current}");

    // The table: v2 highlighted first, then v1.
    let table = between(&dom, "<table", "</table>");
    let row2 = between(table, "<tr class=\"current\">", "</tr>");
    assert!(row2.contains("v2") && row2.contains(&id2), "{row2}");
    assert_eq!(
        table.matches("<tr class=\"current\">").count(),
        1,
        "{table}"
    );
    let row1 = between(table, &id1, "</tr>");
    assert!(
        table.find(&id2) < table.find(&id1),
        "newest first:\n{table}"
    );
    let row1_start = &table[..table.find(&id1).unwrap()];
    let row1_start = &row1_start[row1_start.rfind("<tr").unwrap()..];
    assert!(
        row1_start.starts_with("<tr>") && row1_start.contains("v1"),
        "v1 row: {row1_start}{row1}"
    );

    // The JSON says the same.
    let json = test_support::http::get(agent.port(), "/_blargh/json").unwrap();
    assert_eq!(json.status, 200);
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["current"]["id"], id2.as_str());
    assert_eq!(v["current"]["message"], message);
    assert_eq!(v["previous"][0]["id"], id1.as_str());
    assert_eq!(v["app"], "hello");

    // Keep a screenshot for humans.
    let dir = hello::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("dashboard.png");
    chromium.screenshot(&url, &png, 1200, 800).unwrap();
    eprintln!("screenshot: {}", png.display());
}
