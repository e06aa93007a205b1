//! The `keystead` binary.
fn main() -> std::process::ExitCode {
    keystead_server::cli::main()
}
