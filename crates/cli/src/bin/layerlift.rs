//! `layerlift`: runs the steps as subcommands, git-style (`layerlift unpack …` is `layerlift-unpack …`);
//! its command line is [`layerlift_cli::app::Cli`].

fn main() -> std::process::ExitCode {
    layerlift_cli::app::main()
}
