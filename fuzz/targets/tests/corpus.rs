//! The fuzz targets on stable, as CI runs them: every input of the committed corpus
//! (fuzz/corpus/TARGET, and a local cargo fuzz run's fuzz/artifacts/TARGET when there is
//! one), then a time-bounded stream of mutations of it, each through the target's body.
//!
//! A panic fails the test, and the input that caused it is written under the test's
//! temp dir with the path printed: copy it into fuzz/corpus/TARGET and it stays a failing
//! test until it is fixed (a crash cargo fuzz found is one already, via fuzz/artifacts).
//!
//! `SHIPWATCH_FUZZ_SECS` (default 1) is each target's mutation time; `SHIPWATCH_FUZZ_SEED`
//! repeats a run's mutations (every run prints its seed).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shipwatch_fuzz_targets::TARGETS;

/// Longest input a mutation makes (libFuzzer's default max_len is 4096 too).
const MAX_LEN: usize = 4096;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Each target's mutation time.
fn budget() -> Duration {
    let secs = std::env::var("SHIPWATCH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
}

/// The seed of this run's mutations: from the environment, else the clock (printed, so
/// a failure can be repeated; its input is kept anyway).
fn seed() -> u64 {
    std::env::var("SHIPWATCH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

/// The files of `dir`, by name; none when it does not exist.
fn inputs_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// What a panic said, when `body` panicked on `input`.
fn panic_of(body: shipwatch_fuzz_targets::Body, input: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| body(input)))
        .err()
        .map(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned())
        })
}

/// Writes a crashing input where the developer can pick it up; returns its path.
fn keep(target: &str, input: &[u8]) -> PathBuf {
    // FNV-1a: a stable name for the same bytes.
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-found")
        .join(target);
    let path = dir.join(format!("crash-{hash:016x}"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        eprintln!("cannot keep the crashing input at {}: {e}", path.display());
    }
    path
}

/// Tokens a target's parser cares about, spliced in by the mutator.
fn dictionary(target: &str) -> &'static [&'static [u8]] {
    match target {
        "frame_decoder" => &[
            b"\x00\x00\x00\x00",
            b"\x00\x00\x00\x02{}",
            b"\xff\xff\xff\xff",
            b"\x00\x80\x00\x01",
            b"\x7f\xff\xff\xff",
            br#"{"type":"hello","version":2,"runner":0,"pid":1,"job":null,"draining":false}"#,
            br#"{"type":"events","job":1,"events":[]}"#,
            br#"{"type":"started","job":1}"#,
            br#"{"type":"ack","job":1,"seq":18446744073709551615}"#,
            br#"{"type":"assign","job":1,"spec":{}}"#,
            br#"{"type":"cancel","job":1}"#,
            br#"{"type":"welcome","version":2}"#,
            br#"{"type":"refused","reason":"x"}"#,
            br#""kind":"line","host":"h","stream":"stderr","text":"\ud800""#,
            br#""kind":"host","state":"ok","exit_code":-1"#,
            br#""kind":"job","state":"failed","reason":null"#,
            b"\"ts\":\"2026-12-02T05:40:00.000Z\"",
            b"1e999",
            b"-0",
            b"\\u0000",
        ],
        "config_loader" => &[
            b"[server]\n",
            b"[supervisor]\n",
            b"[ssh]\n",
            b"[hosts]\n",
            b"[[tasks]]\nname = \"t\"\nhosts = [\"h\"]\nscript = \"x\"\n",
            b"[[tasks.params]]\nname = \"P\"\npattern = \"^(a|b)*$\"\n",
            b"[[users]]\n",
            b"[[tokens]]\n",
            b"[[notify]]\nurl = \"http://[::1]:0/\"\n",
            b"[auth]\n",
            b"[store]\nurl = \"postgres://u@%2Frun/db\"\n",
            b"batch = [1, \"25%\", \"100%\"]\n",
            b"max_failures = \"101%\"\n",
            b"listen = \"[::]:65536\"\n",
            b"= 18446744073709551616\n",
            b"= -9223372036854775808\n",
            b"= 1e308\n",
            b"\"h=10.0.0.1:99999\"",
            b"'''\n",
            b"\"\"\"\n",
            b"\\u{10FFFF}",
            b"\xc3\xa9\xe2\x80\x8b",
        ],
        "ws_query" => &[
            b"after=",
            b"after=18446744073709551616",
            b"after=-1",
            b"&streams=",
            b"&streams=stdout,stderr,",
            b"&hosts=",
            b"&hosts=,,",
            b"&kinds=line,host,job",
            b"%",
            b"%FF",
            b"%00",
            b"+",
            b"&&&",
            b"==",
        ],
        _ => &[],
    }
}

/// libFuzzer-style mutations of the corpus: a few edits of one seed at a time.
struct Mutator {
    rng: fastrand::Rng,
    dictionary: &'static [&'static [u8]],
    /// The target reads text: mutants are made valid UTF-8 so none is skipped unread.
    text: bool,
}

impl Mutator {
    fn mutant(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let rng = &mut self.rng;
        let mut data = if seeds.is_empty() || rng.u8(..16) == 0 {
            (0..rng.usize(..64)).map(|_| rng.u8(..)).collect()
        } else {
            seeds[rng.usize(..seeds.len())].clone()
        };
        for _ in 0..rng.usize(1..=8) {
            let at = rng.usize(..=data.len());
            match rng.u8(..9) {
                0 if !data.is_empty() => {
                    let i = rng.usize(..data.len());
                    data[i] ^= 1 << rng.u8(..8);
                }
                1 if !data.is_empty() => {
                    const ODD: &[u8] = b"\x00\x01\x7f\x80\xff\n\r\t\"'\\=[]{}%&,.-0";
                    let i = rng.usize(..data.len());
                    data[i] = ODD[rng.usize(..ODD.len())];
                }
                2 => {
                    let n = rng.usize(1..16);
                    let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                    data.splice(at..at, bytes);
                }
                3 => {
                    let end = (at + rng.usize(..32)).min(data.len());
                    data.drain(at..end);
                }
                4 if !data.is_empty() => {
                    let from = rng.usize(..data.len());
                    let to = (from + rng.usize(1..64)).min(data.len());
                    let chunk = data[from..to].to_vec();
                    let at = rng.usize(..=data.len());
                    data.splice(at..at, chunk);
                }
                5 if !seeds.is_empty() => {
                    let other = &seeds[rng.usize(..seeds.len())];
                    let from = rng.usize(..=other.len());
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                }
                6 | 7 if !self.dictionary.is_empty() => {
                    let token = self.dictionary[rng.usize(..self.dictionary.len())];
                    data.splice(at..at, token.iter().copied());
                }
                _ => data.truncate(at),
            }
        }
        data.truncate(MAX_LEN);
        if self.text {
            data = String::from_utf8_lossy(&data).into_owned().into_bytes();
        }
        data
    }
}

/// The committed corpus, then `budget` of mutants, through `target`'s body.
fn exercise(target: &str) {
    let body = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let dir = fuzz_dir();
    let corpus = inputs_in(&dir.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is empty or missing"
    );
    let found = inputs_in(&dir.join("artifacts").join(target));
    for (path, input) in corpus.iter().chain(&found) {
        if let Some(message) = panic_of(body, input) {
            panic!("{target} panics on {}: {message}", path.display());
        }
    }

    let seed = seed();
    let mut mutator = Mutator {
        rng: fastrand::Rng::with_seed(seed),
        dictionary: dictionary(target),
        text: target != "frame_decoder",
    };
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, bytes)| bytes).collect();
    let budget = budget();
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        let input = mutator.mutant(&seeds);
        runs += 1;
        if let Some(message) = panic_of(body, &input) {
            let kept = keep(target, &input);
            panic!(
                "{target} panics on mutant {runs} of seed {seed}: {message}\n\
                 the input: {} (copy it into fuzz/corpus/{target}/ to keep it as a test)",
                kept.display()
            );
        }
    }
    println!(
        "fuzz {target}: {} corpus inputs, {runs} mutants in {:.1} s, no panic (seed {seed})",
        seeds.len(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn frame_decoder_survives_its_corpus_and_mutants() {
    exercise("frame_decoder");
}

#[test]
fn config_loader_survives_its_corpus_and_mutants() {
    exercise("config_loader");
}

#[test]
fn ws_query_survives_its_corpus_and_mutants() {
    exercise("ws_query");
}

/// A new target needs its body here, a `[[bin]]` in fuzz/Cargo.toml, a file in
/// fuzz/fuzz_targets and a corpus: this keeps the four in step.
#[test]
fn every_target_has_its_libfuzzer_binary_and_corpus() {
    let dir = fuzz_dir();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        let source = dir.join("fuzz_targets").join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&source).unwrap_or_default();
        assert!(
            text.contains(&format!("shipwatch_fuzz_targets::{target}(")),
            "{} does not call shipwatch_fuzz_targets::{target}",
            source.display()
        );
        assert!(
            !inputs_in(&dir.join("corpus").join(target)).is_empty(),
            "fuzz/corpus/{target} is empty"
        );
    }
}
