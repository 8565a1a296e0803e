//! `cargo xtask`: the one entry point for development tasks (see docs/development.md).
//!
//! ```text
//! cargo xtask test [CARGO TEST ARGS…]   install test tools, lint, generate fixtures, cargo test --workspace
//! cargo xtask lint                      module import cycles and functions over 120 lines in crates/*/src
//! cargo xtask fixtures [--force]        generate test archives with real tools into target/fixtures/
//! cargo xtask fuzz [--minutes N] [...]  build and run the cargo-fuzz targets in fuzz/ (nightly)
//! cargo xtask bench [--quick] [...]     unpack vs tar -xf, convert and push vs skopeo, ~300 MB image
//! cargo xtask big-layer [--size N]      a 4 GiB incompressible layer through unpack/convert/push (RSS)
//! cargo xtask man [DIR]                 man pages from the CLI's clap definitions (target/man)
//! cargo xtask dist [--debug]            release archive + SHA256SUMS for this target (target/dist)
//! ```

mod bad_fixtures;
mod bench;
mod bench_bulk;
mod bench_cpu;
mod bench_docker;
mod bench_net;
mod bench_pack;
mod bench_repush;
mod bench_steps;
mod big_layer;
mod dist;
mod fixtures;
mod fuzz;
mod lint;
mod man;
mod measure;
mod registry;
mod synthetic;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  test [ARGS…]        scripts/install-test-deps.sh, `cargo xtask lint`, `cargo xtask fixtures`,
                      `cargo doc`, then `cargo test --workspace --locked ARGS…`
  lint                import cycles between the modules of a crate and functions over 120 lines
                      in crates/*/src, one `file:line: …` each
  fixtures [--force]  generate test archives with real tools into target/fixtures/
  fuzz [--minutes N] [--build-only] [--regressions] [TARGET…]
                      build the cargo-fuzz targets in fuzz/ (nightly + cargo-fuzz) and run each
                      for its share of N minutes (default 2), seeded from fuzz/seeds,
                      fuzz/regressions and tests/fixtures
  bench [--quick] [--reps N] [--strict] [--no-build] [--steps unpack,convert,push,pack,repush]
        [--baseline DIR]
                      build a ~300 MB docker-save archive from files on this machine and time
                      layerlift-unpack (file and pipe) against `tar -xf`, layerlift-convert
                      against `skopeo copy --dest-compress` and pigz, layerlift-push against
                      `skopeo copy` to a local docker-registry (cold, and re-pushes), layerlift-pack
                      against `tar -cf` of the same blobs, with peak RSS; the archive pushes'
                      client CPU per GB and per layer beside their compute floor
  big-layer [--size BYTES] [--no-build]
                      one incompressible layer (default 4 GiB) unpacked, converted and pushed to a
                      local docker-registry; peak RSS and disk use against the bounds in docs/benchmarks.md
  man [DIR]           man pages for layerlift and each of its commands (clap_mangen) into DIR
                      (target/man)
  dist [--debug]      release archive for this target: the five binaries, man pages, bash/zsh/fish
                      completions, LICENSE, README.md; target/dist/layerlift-VERSION-TARGET.tar.gz
                      and target/dist/SHA256SUMS

See docs/development.md.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match task {
        "test" => test::run(rest),
        "lint" => lint::run(rest),
        "fixtures" => fixtures::run(rest).map(|()| ExitCode::SUCCESS),
        "fuzz" => fuzz::run(rest).map(|()| ExitCode::SUCCESS),
        "bench" => bench::run(rest),
        "big-layer" => big_layer::run(rest),
        "man" => man::run(rest),
        "dist" => dist::run(rest),
        measure::RUSAGE_TASK => measure::rusage_main(rest),
        bench_cpu::FLOOR_TASK => bench_cpu::floor_main(rest),
        man::MAN_TASK => man::generate(rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => {
            eprintln!("xtask: unknown task `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask {task}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
