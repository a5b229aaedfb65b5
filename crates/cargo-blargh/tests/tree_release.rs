//! A release is a directory: `include` ships files beside the built binary and the app
//! runs in their tree; `release_dir` + `start` ships a tree built by other tools (here a
//! Python app with a start script). Deployed over a loopback sshd to a real agent: the
//! files are served from the release's working directory, a one-file change travels as a
//! small delta of the archive, modes and inside symlinks are kept, the switch between two
//! tree releases fails no request under wrk, and what cannot ship is refused naming the
//! key, before anything is sent (root only).

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use test_support::hello::{self, Profile};
use test_support::http;
use test_support::load::Wrk;
use test_support::loopback::{AppDir, LocalServer, can_run};
use test_support::remote::text;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

fn write(path: &Path, body: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `deploy` that must fail with exit code 2, before connecting; its stderr.
fn refused(app: &AppDir, server: &LocalServer, args: &[&str]) -> String {
    let mut all = vec!["deploy"];
    all.extend(args);
    let out = app.run(&all, &server.connect_flags());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn include_ships_files_beside_the_binary_and_a_changed_file_as_a_delta() {
    if !can_run("include_ships_files_beside_the_binary_and_a_changed_file_as_a_delta") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "trees");
    let app = AppDir::new(Path::new(BIN));
    let keys = format!(
        "hosts = [\"{}\"]\napp = \"trees\"\n{}\nready_timeout = \"30s\"\ndrain_timeout = \"2s\"\n\
         include = [\"static/**\"]",
        server.destination(),
        server.listen_line()
    );
    app.configure("hello", &keys);
    let dir = app.path();
    write(&dir.join("static/hello.txt"), "first edition\n", 0o644);
    write(&dir.join("static/run.sh"), "#!/bin/sh\necho hi\n", 0o755);
    symlink("hello.txt", dir.join("static/latest")).unwrap();
    // Some bulk that does not change, as real static files are.
    let bulk: String = (0..20_000)
        .map(|i| format!("line {i} of the manual\n"))
        .collect();
    write(&dir.join("static/manual.txt"), &bulk, 0o644);
    write(&dir.join("secret.env"), "not shipped\n", 0o644);
    let bin = v1.to_str().unwrap();

    let (sent, whole) = app.deploy_json(&server, &["--binary", bin]);
    assert_eq!(sent, "whole");
    let get = |path: &str| {
        let r = http::get(server.web_port(), path).unwrap();
        (r.status, r.body)
    };
    assert_eq!(get("/static/hello.txt"), (200, "first edition\n".into()));
    assert_eq!(get("/static/latest"), (200, "first edition\n".into()));
    let tree = server.root().join("current/tree");
    assert_eq!(
        mode(&tree.join("static/run.sh")),
        0o755,
        "the executable stays so"
    );
    assert_eq!(mode(&tree.join("static/hello.txt")), 0o644);
    assert_eq!(
        std::fs::read_link(tree.join("static/latest")).unwrap(),
        Path::new("hello.txt")
    );
    assert!(
        !tree.join("secret.env").exists(),
        "only what include matches"
    );
    assert!(server.root().join("current/release.tar").is_file());

    // One file changed, under load: the archive's delta travels, no request fails.
    let wrk = Wrk::start(&format!("http://127.0.0.1:{}/", server.web_port()), 8, 1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    write(&dir.join("static/hello.txt"), "second edition\n", 0o644);
    let (sent, delta) = app.deploy_json(&server, &["--binary", bin]);
    std::thread::sleep(Duration::from_millis(500));
    let report = wrk.finish().unwrap();
    eprintln!(
        "bytes sent: whole archive (zstd) {whole}, one changed file (delta) {delta}; \
         binary {} bytes",
        std::fs::metadata(&v1).unwrap().len()
    );
    assert_eq!(sent, "delta");
    assert!(delta < 8 * 1024, "a one-line change sent {delta} bytes");
    assert!(delta * 100 < whole, "delta {delta} vs whole {whole}");
    assert!(report.requests > 100, "{}", report.raw);
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);
    assert_eq!(get("/static/hello.txt"), (200, "second edition\n".into()));
    assert_eq!(get("/static/latest"), (200, "second edition\n".into()));

    // Rollback goes back to the first tree, whose files are still its own.
    let out = app.run(&["rollback"], &server.connect_flags());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(get("/static/hello.txt"), (200, "first edition\n".into()));

    // What cannot ship is refused before anything is sent, naming the key.
    symlink("/etc/passwd", dir.join("static/passwd")).unwrap();
    let e = refused(&app, &server, &["--binary", bin]);
    assert!(
        e.contains("include: the symlink static/passwd -> /etc/passwd points outside the release"),
        "{e}"
    );
    std::fs::remove_file(dir.join("static/passwd")).unwrap();
    app.configure(
        "hello",
        &keys.replace("[\"static/**\"]", "[\"static/**\", \"assets/*\"]"),
    );
    let e = refused(&app, &server, &["--binary", bin]);
    assert!(e.contains("include: \"assets/*\" matches no file"), "{e}");
    app.configure("hello", &keys.replace("[\"static/**\"]", "[\"../**\"]"));
    let e = refused(&app, &server, &["--binary", bin]);
    assert!(
        e.contains(
            "package.metadata.blargh.include[0] = \"../**\": leaves the package's directory"
        ),
        "{e}"
    );
    app.configure("hello", &format!("{keys}\nmax_release_size = \"1 MB\""));
    let e = refused(&app, &server, &["--binary", bin]);
    assert!(
        e.contains("more than max_release_size (1000000 bytes)"),
        "{e}"
    );
    // Nothing of those reached the host: still the rolled-back release.
    assert_eq!(get("/static/hello.txt"), (200, "first edition\n".into()));
}

/// A Python app in a tree of its own: `bin/serve` (the start program) takes its socket
/// from fd 3, says READY=1, and serves `priv/greeting.txt` read relative to its working
/// directory, with that directory, its arguments and `BLARGH_DATA_DIR`.
const SERVE: &str = r#"#!/usr/bin/env python3
import os, socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        with open("priv/greeting.txt") as f:
            greeting = f.read().strip()
        body = f"{greeting} cwd={os.getcwd()} args={sys.argv[1:]} data={os.environ.get('BLARGH_DATA_DIR')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True

s = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
s.socket.close()
s.socket = socket.socket(fileno=3)
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
s.serve_forever()
"#;

#[test]
fn a_release_dir_is_shipped_whole_and_started_with_its_start_command() {
    if !can_run("a_release_dir_is_shipped_whole_and_started_with_its_start_command") {
        return;
    }
    let server = LocalServer::start(Path::new(BIN), "treedir");
    let app = AppDir::new(Path::new(BIN));
    let keys = format!(
        "hosts = [\"{}\"]\napp = \"treedir\"\n{}\nready_timeout = \"30s\"\ndrain_timeout = \"2s\"\n\
         release_dir = \"_build/rel/shop\"\nstart = [\"bin/shop\", \"start\"]\n\
         before_activate = ['/bin/sh', '-c', 'test -x {{bin}} && pwd > \"$BLARGH_DATA_DIR/before\"']",
        server.destination(),
        server.listen_line()
    );
    app.configure("shop", &keys);
    let rel = app.path().join("_build/rel/shop");
    write(&rel.join("lib/serve.py"), SERVE, 0o755);
    std::fs::create_dir_all(rel.join("bin")).unwrap();
    symlink("../lib/serve.py", rel.join("bin/shop")).unwrap();
    write(&rel.join("priv/greeting.txt"), "hello from the tree", 0o644);

    let (sent, whole) = app.deploy_json(&server, &[]);
    assert_eq!(sent, "whole");
    let body = http::get(server.web_port(), "/").unwrap().body;
    let id = std::fs::read_link(server.root().join("current")).unwrap();
    let tree = server.root().join(id).join("tree");
    assert_eq!(
        body,
        format!(
            "hello from the tree cwd={} args=['start'] data={}\n",
            tree.display(),
            server.root().join("data").display()
        )
    );

    // before_activate ran in the tree, with {bin} its start program.
    let before = std::fs::read_to_string(server.root().join("data/before")).unwrap();
    assert_eq!(before.trim(), tree.display().to_string());

    write(&rel.join("priv/greeting.txt"), "hello again", 0o644);
    let (sent, delta) = app.deploy_json(&server, &[]);
    eprintln!("bytes sent: release_dir whole {whole}, one changed file (delta) {delta}");
    assert_eq!(sent, "delta");
    let body = http::get(server.web_port(), "/").unwrap().body;
    assert!(body.starts_with("hello again cwd="), "{body}");

    // A start that is not an executable inside the tree, or a link out of it: refused.
    for (start, why) in [
        ("[\"bin/nope\"]", "start: \"bin/nope\" does not exist"),
        (
            "[\"priv/greeting.txt\"]",
            "start: \"priv/greeting.txt\" is not executable",
        ),
    ] {
        app.configure("shop", &keys.replace("[\"bin/shop\", \"start\"]", start));
        let e = refused(&app, &server, &[]);
        assert!(e.contains(why), "{start}: {e}");
    }
    app.configure(
        "shop",
        &keys.replace("[\"bin/shop\", \"start\"]", "[\"/bin/sh\"]"),
    );
    let e = refused(&app, &server, &[]);
    assert!(
        e.contains("package.metadata.blargh.start") && e.contains("absolute path"),
        "{e}"
    );
    app.configure("shop", &keys);
    symlink("/etc", rel.join("etc")).unwrap();
    let e = refused(&app, &server, &[]);
    assert!(
        e.contains("release_dir: the symlink etc -> /etc points outside"),
        "{e}"
    );
    std::fs::remove_file(rel.join("etc")).unwrap();
    let e = refused(&app, &server, &["--binary", BIN]);
    assert!(e.contains("--binary ships one executable"), "{e}");
    let body = http::get(server.web_port(), "/").unwrap().body;
    assert!(body.starts_with("hello again cwd="), "{body}");
}
