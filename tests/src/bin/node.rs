//! The `switchboard` binary, built inside the test package so that the
//! integration tests can run real component processes
//! (`CARGO_BIN_EXE_switchboard-node`) that cargo always keeps up to date.

fn main() -> std::process::ExitCode {
    switchboard::main()
}
