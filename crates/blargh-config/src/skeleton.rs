//! The section `cargo blargh init` appends to a Cargo.toml: every key with its default and a
//! one-line comment, `hosts` left for the developer to fill in.

use std::path::Path;

use toml::de::DeTable;

use crate::check::{self, quote};
use crate::error::{ConfigError, ErrorKind};
use crate::parse::{Cx, SECTION, package};

/// A commented `[package.metadata.blargh]` section for the package `package_name`.
///
/// Only `hosts = []` is set (and `app`, when the package name cannot be an app name); every
/// other key is a commented-out line showing its default. Once `hosts` lists a server, the
/// section parses, and uncommenting any default line changes nothing.
pub fn skeleton(package_name: &str) -> String {
    let lower = package_name.to_lowercase();
    let app_line = if check::app_name(&lower).is_ok() {
        format!(
            "# Name on the servers (its user, /var/lib/blargh/<app>, services). Default: the \
             package name.\n# app = {}\n",
            quote(&lower)
        )
    } else {
        format!(
            "# Name on the servers (its user, /var/lib/blargh/<app>, services); set because \
             the package name {} cannot be one.\napp = {}\n",
            quote(package_name),
            quote(&check::app_name_from(package_name))
        )
    };
    let bin = if check::bin_name(package_name).is_ok() {
        quote(package_name)
    } else {
        quote(&check::app_name_from(package_name))
    };
    format!(
        r#"# How `cargo blargh deploy` ships this app. Fill in `hosts`; the other lines show defaults.
[{SECTION}]
# Servers to deploy to: "user@host", "user@host:port" or a Host alias from ~/.ssh/config.
hosts = []
{app_line}# The binary target to ship. Default: the only one, else `default-run`, else the package name.
# bin = {bin}
# Build for this target triple instead of this machine's, e.g. for a static musl binary.
# target = "x86_64-unknown-linux-musl"
# Sockets the agent opens and hands to the app by name: blargh::listen("web", ...).
# listen = {{ web = "0.0.0.0:80" }}
# Non-secret environment variables, like {{ RUST_LOG = "info" }}. Secrets stay on the server.
# env = {{}}
# How long a new release may take to signal READY=1 before the deploy gives up on it.
# ready_timeout = "60s"
# How long the old release may finish its requests before it is killed.
# drain_timeout = "30s"
# How many releases each server keeps for rollback (at least 2).
# keep_releases = 5
# Replace a release that stops sending WATCHDOG=1 for this long (the blargh library sends it);
# false: no watchdog.
# watchdog_timeout = "30s"
# How a new release shows it is ready: "notify" (READY=1, which the blargh library sends), or,
# for apps that cannot notify, {{ http = "/up" }}: a 2xx answer on a listener of its own.
# ready = "notify"
# HTTPS from the app itself (the blargh library's `tls` feature): a certificate from an ACME CA
# (Let's Encrypt unless `directory` says another) for these names, kept in the app's data.
# tls = {{ domains = ["shop.example"], contact = "ops@shop.example" }}
# Run on the server with the app's env before the new release takes traffic; {{bin}} is its binary.
# before_activate = []
# Roll back by itself when the new release crashes this often this soon; false: never.
# auto_rollback = {{ window = "60s", crashes = 3 }}
# A deploy lock older than this (from a killed deploy) may be taken over.
# lock_expiry = "15m"
# Switch all servers at once instead of one at a time.
# parallel = false
# known_hosts lines to trust instead of ~/.ssh/known_hosts (CI): `ssh-keyscan HOST`.
# known_hosts = []
# Files shipped beside the binary (globs relative to this directory); the app runs in their tree.
# include = []
# For other stacks: ship this directory whole (built by a hook or by you; no cargo build) ...
# release_dir = "_build/prod/rel/shop"
# ... and start it with this command, a path inside it, then arguments.
# start = ["bin/shop", "start"]
# Refuse to send a release (binary or archive) bigger than this.
# max_release_size = "500 MB"

# Overrides for `cargo blargh deploy -d NAME`: same keys; tables merge, the rest replace.
# [{SECTION}.destinations.staging]
# hosts = ["deploy@staging.example.com"]
# env = {{ RUST_LOG = "debug" }}
"#
    )
}

/// `cargo_toml_text` with [`skeleton`] appended, for the package named in its `[package]`.
///
/// Refuses ([`ErrorKind::SectionExists`]) when the file already has a
/// `[package.metadata.blargh]`, and refuses a file that is not valid TOML or has no
/// `[package]`. `file` is only used in error messages.
pub fn add_skeleton(cargo_toml_text: &str, file: &Path) -> Result<String, ConfigError> {
    let cx = Cx {
        text: cargo_toml_text,
        file,
    };
    let doc = DeTable::parse(cargo_toml_text).map_err(|e| cx.syntax(&e))?;
    let (name, section) = package(&cx, doc.get_ref())?;
    if let Some((key, _)) = section {
        return Err(ConfigError::new(
            ErrorKind::SectionExists,
            file,
            format!(
                "[{SECTION}] is already here: edit it instead (every key is described in \
                 blargh's docs/config.md)"
            ),
        )
        .at(cargo_toml_text, key.span())
        .key(SECTION));
    }
    let mut out = cargo_toml_text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&skeleton(&name));
    if DeTable::parse(&out).is_err() {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            file,
            format!(
                "cannot append [{SECTION}]: `package.metadata` is written as an inline table; \
                 write it as a [package.metadata] section, then run `cargo blargh init` again"
            ),
        )
        .key("package.metadata"));
    }
    Ok(out)
}
