//! `cairn`: import address data, search it, serve it Addok-compatible.

mod eval;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn::{Database, Format, ImportOptions, OnError, Point, ReverseQuery, SearchQuery};
use cairn_server::{config, geojson, http, params, ratelimit, replica};
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The bundled demo data (BAN-shaped, see datasets/fr-sample/README.md).
const DEMO_DATA: &[u8] = include_bytes!("../../datasets/fr-sample/addresses.ndjson.gz");

#[derive(Parser)]
#[command(name = "cairn", version, about = "Address search engine, Addok-compatible, in one process")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import files (BAN NDJSON or BAN CSV, plain or gzip) as one commit;
    /// with --collection, records of a collection (NDJSON, JSON, CSV).
    Import {
        /// Database directory (created if missing).
        #[arg(long, env = "CAIRN_DATA")]
        data: PathBuf,
        /// Input format; detected from each file when absent. Addresses:
        /// ban-ndjson, ban-csv; a collection: ndjson, json, csv.
        #[arg(long, value_parser = ["ban-ndjson", "ban-csv", "ndjson", "json", "csv"])]
        format: Option<String>,
        /// Import into this collection instead of the address base.
        #[arg(long)]
        collection: Option<String>,
        /// The collection's schema (TOML or JSON): creates the collection,
        /// or adds the new fields to it.
        #[arg(long, requires = "collection")]
        schema: Option<PathBuf>,
        /// Skip malformed lines (reported with their numbers) instead of failing.
        #[arg(long)]
        skip_invalid: bool,
        /// Memory the build of the address files may hold in its sorts,
        /// beyond which they go through temporary files: bytes, or with a
        /// unit (512MiB, 1GiB, 300MB); at least 1MiB.
        #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_memory)]
        memory: usize,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Serve the Addok HTTP API.
    Serve(config::ServeArgs),
    /// Search and print the same `GeoJSON` as GET /search.
    Search {
        #[arg(long, env = "CAIRN_DATA")]
        data: PathBuf,
        #[arg(long, default_value_t = 5)]
        limit: usize,
        #[arg(long, allow_hyphen_values = true, requires = "lon")]
        lat: Option<f64>,
        #[arg(long, allow_hyphen_values = true, requires = "lat")]
        lon: Option<f64>,
        #[arg(long = "type")]
        kind: Vec<String>,
        #[arg(long)]
        postcode: Vec<String>,
        #[arg(long)]
        citycode: Vec<String>,
        /// Do not complete the last word as a prefix.
        #[arg(long)]
        no_autocomplete: bool,
        #[command(flatten)]
        output: OutputArgs,
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
    },
    /// Geocode a CSV or NDJSON file: the same rows out, with result columns.
    Batch {
        #[arg(long, env = "CAIRN_DATA")]
        data: PathBuf,
        /// Input file, or - for standard input.
        #[arg(long)]
        input: PathBuf,
        /// Output file, or - for standard output.
        #[arg(long)]
        output: PathBuf,
        /// Columns joined into the query (default: all), comma-separated or repeated.
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Column holding each row's postcode filter.
        #[arg(long)]
        postcode: Option<String>,
        /// Column holding each row's citycode filter.
        #[arg(long)]
        citycode: Option<String>,
        /// Result type filter for every row.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Reverse geocode from --lat and --lon columns.
        #[arg(long, requires_all = ["lat", "lon"])]
        reverse: bool,
        #[arg(long)]
        lat: Option<String>,
        #[arg(long)]
        lon: Option<String>,
        /// Field delimiter (default: detected among , ; tab |).
        #[arg(long)]
        delimiter: Option<char>,
        #[arg(long, value_parser = ["auto", "utf-8", "latin1"], default_value = "auto")]
        encoding: String,
        #[arg(long, value_parser = ["csv", "ndjson"])]
        format: Option<String>,
        /// Rows whose best score is at or below this stay unmatched (Addok's default).
        #[arg(long, default_value_t = 0.5)]
        min_score: f64,
        /// Result columns to add, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        result_columns: Vec<String>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Score search relevance on a file of `query<TAB>expected_id[<TAB>kind]` lines, or reverse on a
    /// file headed `lat<TAB>lon<TAB>expected_id`.
    Eval {
        /// Database directory (or use --url).
        #[arg(long, env = "CAIRN_DATA", required_unless_present = "url")]
        data: Option<PathBuf>,
        /// Query a running Addok-compatible server instead (http://HOST:PORT).
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 5)]
        limit: usize,
        #[arg(long)]
        no_autocomplete: bool,
        /// How many misses to list.
        #[arg(long, default_value_t = 20)]
        misses: usize,
        queries: PathBuf,
    },
    /// Make or install one-file snapshots of a database (backups, replicas).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Print the records nearest a point, as GET /reverse.
    Reverse {
        #[arg(long, env = "CAIRN_DATA")]
        data: PathBuf,
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        #[arg(long, default_value_t = 1)]
        limit: usize,
        #[arg(long = "type")]
        kind: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// How `search` and `reverse` print their results.
#[derive(clap::Args)]
struct OutputArgs {
    /// Print the `GeoJSON` of the HTTP API (the default when stdout is not a terminal).
    #[arg(long, conflicts_with = "table")]
    json: bool,
    /// Print a table (the default on a terminal).
    #[arg(long)]
    table: bool,
}

impl OutputArgs {
    /// A person at a terminal reads a table; a pipe, a file or a script
    /// gets the JSON, byte for byte what the server answers.
    fn table(&self) -> bool {
        self.table || (!self.json && std::io::stdout().is_terminal())
    }
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Write the database's current generation to one file. Searches and
    /// imports in this process would go on meanwhile; a database served by
    /// another process is snapshotted through its GET /snapshot/{generation}.
    Create {
        #[arg(long, env = "CAIRN_DATA")]
        data: PathBuf,
        /// The snapshot file (written to FILE.tmp, then renamed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the database in DIR (created if missing) with a snapshot,
    /// after verifying all of it; a refused snapshot changes nothing. The
    /// database starts a history of its own, so that replicas of its old
    /// content, or of the snapshot's source, install it anew.
    Restore {
        file: PathBuf,
        #[arg(long, env = "CAIRN_DATA")]
        data: PathBuf,
        /// Keep the snapshot's history: for a replica seeded from its
        /// primary's snapshot, which then downloads only newer generations.
        /// Never for a primary: its replicas would take its new commits
        /// for the ones they have.
        #[arg(long)]
        as_replica: bool,
    },
    /// Print a snapshot's manifest (JSON) without reading the rest.
    Inspect { file: PathBuf },
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // A command piped into `head` stops quietly, as Unix tools do,
        // instead of panicking on a closed stdout. Not for the server:
        // a client that hangs up must never kill it.
        // SAFETY: called before any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Err(e) = run(cli) {
        // A bad setting is a usage error, whichever of flag, environment or
        // file gave it: exit 2 as clap does for its own, so that scripts
        // and supervisors tell a wrong command from a failure at run time.
        if e.downcast_ref::<config::UsageError>().is_some() {
            eprintln!("error: {e:#}\n\nFor more information, try '--help'.");
            std::process::exit(2);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

// One arm per subcommand.
#[allow(clippy::too_many_lines)]
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Import { data, format, collection: Some(name), schema, skip_invalid, memory: _, files } => {
            let on_error = if skip_invalid { OnError::Skip } else { OnError::Fail };
            import_collection(&data, &name, schema.as_deref(), format.as_deref(), on_error, &files)
        }
        Command::Import { data, format, collection: None, schema: _, skip_invalid, memory, files } => {
            let format = format.map(|f| f.parse::<Format>()).transpose()?;
            let options = ImportOptions { format, on_error: if skip_invalid { OnError::Skip } else { OnError::Fail } };
            import(&data, &files, &options, memory, false)
        }
        Command::Serve(args) => {
            let settings = args.resolve()?;
            let data = match (&settings.data, settings.demo) {
                (Some(d), false) => d.clone(),
                (d, true) => prepare_demo(d.clone())?,
                (None, false) => return Err(config::UsageError("--data DIR or --demo is required".into()).into()),
            };
            serve(&data, settings)
        }
        Command::Search { data, limit, lat, lon, kind, postcode, citycode, no_autocomplete, output, query } => {
            let db = Database::open_read_only(&data).with_context(|| format!("opening {}", data.display()))?;
            let q = query.join(" ");
            params::check_query(&q).map_err(|e| anyhow::anyhow!(e.title))?;
            if !(1..=params::MAX_LIMIT).contains(&limit) {
                bail!("--limit must be between 1 and {}", params::MAX_LIMIT);
            }
            let near = match (lat, lon) {
                (Some(lat), Some(lon)) => Some(checked_point(lat, lon)?),
                _ => None,
            };
            let filters = filters(kind, postcode, citycode);
            let sq = SearchQuery { q: q.clone(), limit, autocomplete: !no_autocomplete, near, filters };
            let features = db.search(&sq)?;
            if output.table() {
                print!("{}", geojson::table(&features));
                return Ok(());
            }
            let echo = geojson::Echo { query: Some(&q), filters: &sq.filters, center: near, limit };
            println!("{}", geojson::collection(&features, &echo));
            Ok(())
        }
        Command::Batch {
            data,
            input,
            output,
            columns,
            postcode,
            citycode,
            kind,
            reverse,
            lat,
            lon,
            delimiter,
            encoding,
            format,
            min_score,
            result_columns,
            threads,
        } => {
            let db = Database::open_read_only(&data).with_context(|| format!("opening {}", data.display()))?;
            let is_ndjson = |p: &Path| {
                matches!(p.extension().map(|e| e.to_string_lossy().to_lowercase()).as_deref(), Some("ndjson" | "jsonl"))
            };
            let format = match format.as_deref() {
                Some("ndjson") => cairn::BatchFormat::Ndjson,
                None if is_ndjson(&input) => cairn::BatchFormat::Ndjson,
                Some(_) | None => cairn::BatchFormat::Csv,
            };
            let delimiter = match delimiter {
                Some(c) if c.is_ascii() => Some(c as u8),
                Some(c) => bail!("--delimiter must be one ASCII character, not {c:?}"),
                None => None,
            };
            let mut options = cairn::BatchOptions {
                columns,
                postcode_column: postcode,
                citycode_column: citycode,
                kind,
                reverse: if reverse { lat.zip(lon) } else { None },
                delimiter,
                encoding: match encoding.as_str() {
                    "utf-8" => cairn::Encoding::Utf8,
                    "latin1" => cairn::Encoding::Latin1,
                    _ => cairn::Encoding::Auto,
                },
                format,
                min_score,
                result_columns,
                ..cairn::BatchOptions::default()
            };
            if let Some(t) = threads {
                options.threads = t.max(1);
            }
            batch(&db, &input, &output, &options)
        }
        Command::Eval { data, url, limit, no_autocomplete, misses, queries } => {
            let target = match (url, data) {
                (Some(u), _) => eval::Target::http(&u)?,
                (None, Some(d)) => eval::Target::Local(Box::new(
                    Database::open_read_only(&d).with_context(|| format!("opening {}", d.display()))?,
                )),
                (None, None) => bail!("--data DIR or --url URL is required"),
            };
            eval::run(&target, &queries, limit.clamp(1, params::MAX_LIMIT), !no_autocomplete, misses)
        }
        Command::Snapshot(cmd) => snapshot(cmd),
        Command::Reverse { data, lat, lon, limit, kind, output } => {
            let db = Database::open_read_only(&data).with_context(|| format!("opening {}", data.display()))?;
            let rq = ReverseQuery {
                at: checked_point(lat, lon)?,
                limit: limit.clamp(1, params::MAX_LIMIT),
                filters: filters(kind, vec![], vec![]),
            };
            let features = db.reverse(&rq)?;
            if output.table() {
                print!("{}", geojson::table(&features));
                return Ok(());
            }
            let echo = geojson::Echo { query: None, filters: &rq.filters, center: None, limit: rq.limit };
            println!("{}", geojson::collection(&features, &echo));
            Ok(())
        }
    }
}

fn snapshot(cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Create { data, out } => {
            if !data.join("store.redb").is_file() {
                bail!("{} holds no cairn database", data.display());
            }
            let db = Database::open(&data).with_context(|| format!("opening {}", data.display()))?;
            let started = Instant::now();
            let m = db.create_snapshot_file(&out).with_context(|| format!("writing {}", out.display()))?;
            let size = std::fs::metadata(&out).map_or(0, |m| m.len());
            println!(
                "snapshot of generation {} ({} documents, {} files): {} bytes ({} uncompressed) in {:.2} s",
                m.generation,
                m.documents,
                m.files.len(),
                size,
                m.total_len(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        SnapshotCommand::Restore { file, data, as_replica } => {
            let mut input = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            // Refused before the database is even opened (or created).
            cairn::snapshot::read_manifest(&mut input).with_context(|| format!("{} is refused", file.display()))?;
            std::io::Seek::rewind(&mut input).with_context(|| format!("reading {}", file.display()))?;
            let (existed, had_db) = (data.exists(), Database::store_path(&data).exists());
            let db = Database::open(&data).with_context(|| format!("opening {}", data.display()))?;
            let started = Instant::now();
            let mut input = std::io::BufReader::with_capacity(1 << 20, &mut input);
            let restored = if as_replica { db.follow_snapshot(&mut input) } else { db.restore_snapshot(&mut input) };
            if restored.is_err() && !had_db {
                // The empty database opening made would answer every query
                // with nothing, as if it had been restored: leave what was there.
                drop(db);
                let _ = if existed {
                    std::fs::remove_file(Database::store_path(&data))
                } else {
                    std::fs::remove_dir_all(&data)
                };
            }
            let m =
                restored.with_context(|| format!("{} is refused; {} is unchanged", file.display(), data.display()))?;
            println!(
                "restored generation {} ({} documents) into {} in {:.2} s",
                m.generation,
                m.documents,
                data.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        SnapshotCommand::Inspect { file } => {
            let mut input = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let m =
                cairn::snapshot::read_manifest(&mut input).with_context(|| format!("{} is refused", file.display()))?;
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(())
        }
    }
}

fn batch(db: &Database, input: &Path, output: &Path, options: &cairn::BatchOptions) -> Result<()> {
    let reader: Box<dyn std::io::Read> = if input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?)
    };
    // Written next to the destination and renamed at the end: a failed run
    // never leaves half a file where a finished one is expected.
    let (writer, tmp): (Box<dyn Write>, Option<PathBuf>) = if output == Path::new("-") {
        (Box::new(std::io::BufWriter::new(std::io::stdout().lock())), None)
    } else {
        let tmp = output.with_extension("partial");
        let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        (Box::new(std::io::BufWriter::with_capacity(1 << 20, f)), Some(tmp))
    };
    let bar = progress_bar(None, "{spinner} [{elapsed_precise}] {human_pos} rows ({per_sec})");
    let started = Instant::now();
    let progress_bar = bar.clone();
    let summary = db.batch(reader, writer, options, &mut move |n| {
        if let Some(b) = &progress_bar {
            b.inc(n);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            if let Some(t) = &tmp {
                let _ = std::fs::remove_file(t);
            }
            return Err(e.into());
        }
    };
    if let Some(t) = tmp {
        std::fs::rename(&t, output).with_context(|| format!("renaming {} to {}", t.display(), output.display()))?;
    }
    let mut err = std::io::stderr().lock();
    for (line, reason) in &summary.first_malformed {
        let _ = writeln!(err, "malformed row at line {line}: {reason}");
    }
    for line in &summary.first_transcoded {
        let _ = writeln!(err, "warning: line {line} is not UTF-8; read as Windows-1252 (--encoding to choose)");
    }
    if let Some(line) = summary.first_misread {
        // One line for a forced encoding that does not fit the file: the
        // per-row reasons (if any) do not say that the flag is the cause.
        let n = summary.misread;
        let _ = match options.encoding {
            cairn::Encoding::Utf8 => writeln!(
                err,
                "warning: --encoding utf-8 does not decode line {line} ({n} rows in all): they are written back as they came, unmatched; --encoding auto or latin1 reads them"
            ),
            _ => writeln!(
                err,
                "warning: line {line} is UTF-8 read as Windows-1252 as --encoding latin1 says (é becomes Ã©; {n} rows in all): --encoding auto or utf-8 reads it"
            ),
        };
    }
    if summary.transcoded > summary.first_transcoded.len() as u64 {
        let _ = writeln!(err, "warning: {} rows in all were read as Windows-1252", summary.transcoded);
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = writeln!(
        err,
        "{} rows: {} matched, {} unmatched ({} malformed) in {:.2} s ({:.0} rows/s, {} threads)",
        summary.rows,
        summary.matched,
        summary.unmatched,
        summary.malformed,
        secs,
        summary.rows as f64 / secs.max(1e-9),
        options.threads
    );
    Ok(())
}

/// A progress bar on stderr when it is a terminal; none for pipes and logs.
fn progress_bar(len: Option<u64>, template: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn checked_point(lat: f64, lon: f64) -> Result<Point> {
    let p = Point { lat, lon };
    if !p.is_valid() {
        bail!("coordinates out of range: lat must be within ±90 and lon within ±180");
    }
    Ok(p)
}

fn filters(kind: Vec<String>, postcode: Vec<String>, citycode: Vec<String>) -> Vec<(String, Vec<String>)> {
    [("type", kind), ("postcode", postcode), ("citycode", citycode)]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, mut v)| {
            v.sort();
            v.dedup();
            (k.to_owned(), v)
        })
        .collect()
}

/// What a read-write open is about to create: the database (a mistyped
/// `--data` must not pass unseen for an empty one) and, when the
/// directory is new or holds no database, what was there before, so that a
/// failed import can take away everything it made.
struct NewDatabase {
    dir: PathBuf,
    /// Entries of the directory before, `None` when it did not exist.
    before: Option<std::collections::HashSet<std::ffi::OsString>>,
}

impl NewDatabase {
    /// `None` when `dir` already holds a database.
    fn check(dir: &Path) -> Option<NewDatabase> {
        if Database::store_path(dir).exists() {
            return None;
        }
        let before =
            std::fs::read_dir(dir).ok().map(|d| d.filter_map(std::result::Result::ok).map(|e| e.file_name()).collect());
        Some(NewDatabase { dir: dir.to_owned(), before })
    }

    /// The line on stderr that says so, once the database is made.
    fn announce(&self, what: &str) {
        eprintln!(
            "note: {} held no cairn database: created {what} ({})",
            self.dir.display(),
            Database::store_path(&self.dir).display()
        );
    }

    /// Removes what the failed command created: the directory if it made
    /// it, else the entries that were not there before.
    fn remove(&self) {
        let result = match &self.before {
            None => std::fs::remove_dir_all(&self.dir),
            Some(before) => std::fs::read_dir(&self.dir).and_then(|entries| {
                for e in entries.filter_map(std::result::Result::ok).filter(|e| !before.contains(&e.file_name())) {
                    let p = e.path();
                    if p.is_dir() {
                        std::fs::remove_dir_all(&p)?;
                    } else {
                        std::fs::remove_file(&p)?;
                    }
                }
                Ok(())
            }),
        };
        if let Err(e) = result {
            eprintln!("warning: could not remove the new database in {}: {e}", self.dir.display());
        }
    }
}

fn import(data: &Path, files: &[PathBuf], options: &ImportOptions, memory: usize, demo: bool) -> Result<()> {
    for f in files {
        if !f.is_file() {
            bail!("{}: no such file", f.display());
        }
    }
    let new = NewDatabase::check(data);
    let result = import_into(data, files, options, memory, demo, new.as_ref());
    if let (Err(_), Some(new)) = (&result, &new) {
        // The import created the database and failed: leave the directory
        // as it was, not an empty database that a later `serve` would
        // answer from without a word.
        new.remove();
    }
    result
}

fn import_into(
    data: &Path,
    files: &[PathBuf],
    options: &ImportOptions,
    memory: usize,
    demo: bool,
    new: Option<&NewDatabase>,
) -> Result<()> {
    let db = Database::open_with_build_memory(data, memory).with_context(|| format!("opening {}", data.display()))?;
    let total: u64 = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
    let bar = progress_bar(
        Some(total),
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    );
    let started = Instant::now();
    let progress_bar = bar.clone();
    let report = db.import(files, options, &mut move |n| {
        if let Some(b) = &progress_bar {
            b.inc(n);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let unchanged = if new.is_some() { "nothing was created" } else { "the database is unchanged" };
    let report = report.with_context(|| format!("import failed; {unchanged}"))?;
    let secs = started.elapsed().as_secs_f64();
    // Said once it stays (a failed import removes it); the demo says where
    // it imports itself.
    if let (Some(new), false) = (new, demo) {
        new.announce("a new one");
    }
    let mut err = std::io::stderr().lock();
    for (line, reason) in &report.skipped.first {
        let _ = writeln!(err, "skipped line {line}: {reason}");
    }
    if report.skipped.count > report.skipped.first.len() as u64 {
        let _ = writeln!(err, "... {} lines skipped in all", report.skipped.count);
    }
    if report.commit.written == 0 {
        // Not an error: an empty update file is a normal day for a script
        // that imports diffs. But a file read as holding nothing is as
        // often a wrong file, so it is said.
        let why = if report.skipped.count > 0 { "every record line was skipped" } else { "the input holds no records" };
        let _ = writeln!(err, "warning: no documents imported: {why}");
    }
    let summary = format!(
        "imported {} documents in {:.2} s ({} skipped lines); generation {}, {} documents in total",
        report.commit.written, secs, report.skipped.count, report.commit.generation, report.commit.total
    );
    if demo {
        let _ = writeln!(err, "{summary}");
    } else {
        println!("{summary}");
    }
    Ok(())
}

fn import_collection(
    data: &Path,
    name: &str,
    schema: Option<&Path>,
    format: Option<&str>,
    on_error: OnError,
    files: &[PathBuf],
) -> Result<()> {
    for f in files {
        if !f.is_file() {
            bail!("{}: no such file", f.display());
        }
    }
    let new = NewDatabase::check(data);
    let result = import_collection_into(data, name, schema, format, on_error, files, new.as_ref());
    if let (Err(_), Some(new)) = (&result, &new) {
        // As for addresses: a failed import leaves the directory as it was.
        new.remove();
    }
    result
}

fn import_collection_into(
    data: &Path,
    name: &str,
    schema: Option<&Path>,
    format: Option<&str>,
    on_error: OnError,
    files: &[PathBuf],
    new: Option<&NewDatabase>,
) -> Result<()> {
    use cairn::collection::{ImportFormat, Schema};
    let format = match format {
        None => None,
        Some(f) => Some(
            ImportFormat::parse(f).with_context(|| format!("--format {f}: a collection takes ndjson, json or csv"))?,
        ),
    };
    let schema = match schema {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(Schema::parse(&text).with_context(|| format!("{}", p.display()))?)
        }
        None => None,
    };
    let db = Database::open(data).with_context(|| format!("opening {}", data.display()))?;
    if let Some(n) = new {
        n.announce("a new one");
    }
    if schema.is_none() && db.collection(name).is_err() {
        bail!("no collection {name:?} in {}: give its schema with --schema FILE", data.display());
    }
    let total: u64 = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
    let bar = progress_bar(
        Some(total),
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    );
    let started = Instant::now();
    let progress_bar = bar.clone();
    let done = db.import_collection(name, schema.as_ref(), files, format, on_error, &mut move |n| {
        if let Some(b) = &progress_bar {
            b.inc(n);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (report, commit) = done.with_context(|| format!("import into {name} failed; the collection is unchanged"))?;
    let mut err = std::io::stderr().lock();
    for p in &report.problems {
        let field = p.path.as_deref().map(|f| format!(" field {f:?}:")).unwrap_or_default();
        let _ = writeln!(err, "skipped {}:{field} {}", p.at, p.reason);
    }
    if report.skipped > report.problems.len() as u64 {
        let _ = writeln!(err, "... {} records skipped in all", report.skipped);
    }
    println!(
        "imported {} records into {name} in {:.2} s ({} skipped); generation {}, {} records in the collection",
        commit.written,
        started.elapsed().as_secs_f64(),
        report.skipped,
        commit.generation,
        commit.total
    );
    Ok(())
}

/// Imports the bundled dataset into `dir` (default: a directory under the
/// system's temporary directory), unless it already holds this very data.
fn prepare_demo(dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("cairn-demo"));
    let stamp = format!("{}-{}\n", env!("CARGO_PKG_VERSION"), DEMO_DATA.len());
    let stamp_file = dir.join("DEMO");
    if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(dir);
    }
    if dir.exists() {
        // Only ever clear a directory an older demo made, or an empty one.
        let empty = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
        if !stamp_file.exists() && !empty {
            bail!("{} is not a cairn demo directory and not empty: choose another --data for --demo", dir.display());
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("demo.ndjson.gz");
    std::fs::write(&src, DEMO_DATA)?;
    eprintln!("importing the demo dataset into {} ...", dir.display());
    // The summary goes to stderr: stdout's first line is the server's banner.
    import(&dir.join("db"), std::slice::from_ref(&src), &ImportOptions::default(), cairn::DEFAULT_BUILD_MEMORY, true)?;
    std::fs::remove_file(&src)?;
    std::fs::write(&stamp_file, stamp)?;
    Ok(dir)
}

fn serve(data: &Path, settings: config::Settings) -> Result<()> {
    let dir = if data.join("DEMO").exists() { data.join("db") } else { data.to_owned() };
    let new = NewDatabase::check(&dir);
    let db = Arc::new(Database::open(&dir).with_context(|| format!("opening {}", dir.display()))?);
    if let Some(new) = new {
        // An empty directory is how a replica starts, and how a primary
        // fed by POST /documents does; a mistyped --data is too, so it is
        // said before the banner.
        new.announce("a new, empty one");
    }
    match settings.access_log {
        config::AccessLog::Off => {}
        config::AccessLog::Text => tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init(),
        config::AccessLog::Json => {
            tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_target(false).init();
        }
    }
    let mut app = http::App::new(db.clone(), settings.cache.map(cairn::ResponseCache::new), settings.limits);
    app.limiter = settings.rate.map(|(rate, burst)| ratelimit::RateLimiter::new(rate, burst));
    app.access_log = settings.access_log;
    app.write_token.clone_from(&settings.write_token);
    app.snapshot_token.clone_from(&settings.snapshot_token);
    app.live_writes = settings.live_writes;
    if settings.live_writes {
        db.set_live_limit(settings.live_limit);
        // No write waits for a merge or a fold of the layers.
        db.merge_in_background();
    }
    app.publisher = Some(replica::Publisher::new(&dir));
    let following = settings.replica_of.clone().map(|url| {
        let status = Arc::new(replica::ReplicaStatus::default());
        app.replica = Some(status.clone());
        (url, status)
    });

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = settings.threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build()?;
    let listen = settings.listen;
    let background = db.clone();
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        if let Some((url, status)) = following {
            tokio::spawn(replica::follow(db.clone(), url, settings.snapshot_token.clone(), settings.poll, status));
        }

        // Tests and scripts wait for this line to know the port.
        println!("cairn listening on http://{addr} ({} documents, generation {})", db.len(), db.generation());
        let _ = std::io::stdout().flush();
        http::serve(Arc::new(app), listener, settings.shutdown_timeout).await
    });
    // A CSV batch still running on a blocking thread has lost its client;
    // it is not waited for.
    rt.shutdown_timeout(Duration::from_millis(100));
    // The merge or fold under way ends, and the threads let go of the
    // database, so that it closes (redb's clean shutdown) as main returns.
    background.stop_background();
    served
}

/// The smallest `--memory`: below it, sorts make runs of a few thousand
/// records and merges of merges, for no memory worth saving.
const MIN_MEMORY: u64 = 1 << 20;

/// A size in bytes: a number, with an optional unit (B, KB, MB, GB in
/// powers of 1000; KiB, MiB, GiB in powers of 1024), case ignored.
fn parse_memory(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = (&t[..split], t[split..].trim());
    let bad = || format!("{s:?} is not a size: expected bytes or a number with a unit, like 512MiB, 1GiB or 300MB");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(scale).ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < MIN_MEMORY {
        return Err(format!("{s:?} is too small: at least 1MiB"));
    }
    usize::try_from(bytes).map_err(|_| format!("{s:?} is too large"))
}
