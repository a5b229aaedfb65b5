//! Shared setup for blargh's tests, so no test file repeats it: built releases of
//! examples/hello, a running agent, load generators (hey), a throwaway sshd, and VMs.
