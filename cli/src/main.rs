//! `pacerelle`: the command line. Everything lives in the library (`pacerelle_cli`), so the
//! binary only hands over the process's arguments and returns the exit code.

fn main() -> std::process::ExitCode {
    pacerelle_cli::main()
}
