//! Shared setup for blargh's tests, so no test file repeats it: built releases of
//! examples/hello, a running agent, load generators (wrk), a throwaway sshd, and VMs.
pub mod sshd;

pub mod agent;
pub mod browser;
pub mod hello;
pub mod http;
pub mod load;
pub mod loopback;
pub mod remote;
pub mod vm;
