//! Shared setup for blargh's tests, so no test file repeats it: built releases of
//! examples/hello, a running agent, load generators (wrk), a throwaway sshd, VMs, and
//! waiting for conditions instead of sleeping.
pub mod sshd;

pub mod agent;
pub mod attack;
pub mod browser;
pub mod certs;
pub mod conns;
pub mod faults;
pub mod h2client;
pub mod h2load;
pub mod hello;
pub mod http;
pub mod load;
pub mod loopback;
pub mod pebble;
pub mod remote;
pub mod stacks;
pub mod vm;
pub mod wait;
