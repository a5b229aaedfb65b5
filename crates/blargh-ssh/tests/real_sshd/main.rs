//! Tests of blargh-ssh against a real OpenSSH `sshd` on a loopback port (started by
//! each test, with a throwaway host key), real `ssh-agent`s and keys from `ssh-keygen`.
//! They need root (for `/run/sshd` and logging in as other users), `openssh-server`
//! and `openssh-client`.

mod auth;
mod common;
mod config;
mod exec;
mod host_keys;
mod timeouts;
