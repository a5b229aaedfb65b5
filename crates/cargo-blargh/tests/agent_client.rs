//! The typed client against a real agent: many requests over one connection, `configure`
//! applied at once, persisted and pruning to `keep_releases`, and a request of another
//! protocol version refused with a message that names the older side.

use blargh_agent::client::{self, ClientError};
use blargh_proto::control::{AgentSettings, Encoding};
use blargh_proto::manifest::ReleaseMeta;
use sha2::{Digest, Sha256};
use test_support::agent::{AgentOptions, TestAgent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn configure_applies_persists_and_prunes_over_one_connection() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let socket = agent.root().join("agent.sock");
    rt().block_on(async {
        let mut c = client::connect(&socket).await.unwrap();
        let before = c.status().await.unwrap().settings;
        assert_eq!(before.keep_releases, 5, "the command line's default");
        for i in 0..4 {
            let body = format!("#!/bin/sh\necho release {i}\n").into_bytes();
            let sha = hex::encode(Sha256::digest(&body));
            let (m, again) = c
                .receive(&sha, ReleaseMeta::default(), Encoding::Raw, &body)
                .await
                .unwrap();
            assert!(!again);
            assert_eq!(m.sha256, sha);
        }
        assert_eq!(c.releases().await.unwrap().len(), 4);
        let wanted = AgentSettings {
            ready_timeout_ms: 5_000,
            drain_timeout_ms: 2_000,
            keep_releases: 2,
            watchdog_timeout_ms: 5_000,
            ready: Default::default(),
            tls: None,
        };
        let effective = c
            .configure(wanted.clone(), Some("test".into()))
            .await
            .unwrap();
        assert_eq!(effective, wanted);
        assert_eq!(c.status().await.unwrap().settings, wanted);
        let left = c.releases().await.unwrap();
        assert_eq!(left.len(), 2, "pruned to keep_releases: {left:?}");
        let audit = c.audit(100).await.unwrap();
        let conf = audit
            .iter()
            .find(|e| e.event == "configure")
            .expect("audited");
        let detail = conf.detail.as_deref().unwrap_or("");
        assert!(
            detail.contains("keep_releases 5 -> ") && detail.contains("keep_releases 2"),
            "{detail}"
        );
        assert_eq!(audit.iter().filter(|e| e.event == "prune").count(), 2);

        // Out of bounds: refused, nothing changed.
        let err = c
            .configure(
                AgentSettings {
                    keep_releases: 1,
                    ..wanted.clone()
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Agent(e) if e.message.contains("keep_releases = 1")),
            "{err:?}"
        );
        // A readiness path that would change the request line: refused too.
        let err = c
            .configure(
                AgentSettings {
                    ready: blargh_proto::control::Readiness::Http("/up HTTP/1.0\r\nX: y".into()),
                    ..wanted.clone()
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Agent(e) if e.message.contains("visible ASCII only")),
            "{err:?}"
        );
        assert_eq!(c.status().await.unwrap().settings, wanted);
    });
    let saved: AgentSettings =
        serde_json::from_str(&std::fs::read_to_string(agent.root().join("settings.json")).unwrap())
            .unwrap();
    assert_eq!(saved.keep_releases, 2);
}

#[test]
fn another_protocol_version_is_refused_naming_the_older_side() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let socket = agent.root().join("agent.sock");
    rt().block_on(async {
        for (line, older) in [
            (
                "{\"cmd\":\"status\"}\n",
                "this cargo-blargh is older than the agent",
            ),
            (
                "{\"v\":99,\"request\":{\"cmd\":\"status\"}}\n",
                "the agent on this host is older",
            ),
        ] {
            let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
            let (read, mut write) = stream.into_split();
            write.write_all(line.as_bytes()).await.unwrap();
            let mut answer = String::new();
            BufReader::new(read).read_line(&mut answer).await.unwrap();
            assert!(
                answer.starts_with("{\"v\":2,\"reply\":\"error\""),
                "{answer}"
            );
            assert!(answer.contains(older), "{answer}");
        }
    });
}

/// `agent ctl pipe` as a child process, the way SSH runs it on a server.
struct PipeTransport {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl client::Transport for PipeTransport {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin.write_all(bytes).await.map_err(|e| e.to_string())?;
        stdin.flush().await.map_err(|e| e.to_string())
    }

    async fn recv_line(&mut self) -> Result<Option<String>, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line).await {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line.trim_end().to_string())),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[test]
fn one_pipe_carries_many_requests_and_uploads() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    rt().block_on(async {
        let mut child = tokio::process::Command::new(BIN)
            .args(["agent", "ctl", "--root"])
            .arg(agent.root())
            .arg("pipe")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = PipeTransport {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        };
        let mut c = client::AgentClient::new(t);
        // Each answer must come back while stdin is still open: the pipe passes replies
        // on as they arrive, and the agent answers request after request.
        assert_eq!(c.status().await.unwrap().app.as_str(), "hello");
        let body = b"#!/bin/sh\nexit 0\n".to_vec();
        let sha = hex::encode(Sha256::digest(&body));
        let (m, _) = c
            .receive(&sha, ReleaseMeta::default(), Encoding::Raw, &body)
            .await
            .unwrap();
        // A refused upload (wrong digest) is skipped whole; the next request still works.
        let err = c
            .receive(
                &"0".repeat(64),
                ReleaseMeta::default(),
                Encoding::Raw,
                &body,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
        let releases = c.releases().await.unwrap();
        assert_eq!(releases.len(), 1);
        assert_eq!(releases[0].manifest.id, m.id);
        assert!(c.lock_status().await.unwrap().is_none());
        let mut t = c.into_transport();
        drop(t.stdin.take());
        let status = t.child.wait().await.unwrap();
        assert!(status.success(), "the pipe ends with its input: {status}");
    });
}

#[test]
fn a_refused_upload_is_skipped_whole() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let socket = agent.root().join("agent.sock");
    rt().block_on(async {
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let (read, mut write) = stream.into_split();
        // The body looks like a request line: read as one, it would be answered.
        let body = "{\"v\":2,\"request\":{\"cmd\":\"releases\"}}\n";
        let text = format!(
            "{{\"v\":2,\"request\":{{\"cmd\":\"receive\",\"sha256\":\"bad\",\"size\":{}}}}}\n\
             {body}{{\"v\":2,\"request\":{{\"cmd\":\"lock\",\"action\":\"status\"}}}}\n",
            body.len()
        );
        write.write_all(text.as_bytes()).await.unwrap();
        write.shutdown().await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let mut answers = Vec::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            answers.push(l);
        }
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert!(answers[0].contains("is not a sha256"), "{answers:?}");
        assert!(answers[1].contains("\"reply\":\"lock\""), "{answers:?}");
    });
}
