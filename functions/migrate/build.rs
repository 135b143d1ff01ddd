//! Embeds every `migrations/NNNN_name.sql` file into the binary.
use std::fmt::Write;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations/ exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut out = String::from("&[\n");
    for f in files {
        let stem = f.file_stem().and_then(|s| s.to_str()).expect("utf-8 name");
        let (version, name) = stem
            .split_once('_')
            .expect("migration files are named NNNN_name.sql");
        let version: i32 = version
            .parse()
            .expect("migration files start with a number");
        println!("cargo:rerun-if-changed={}", f.display());
        writeln!(
            out,
            "    tern_db::Migration {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
            f.canonicalize().expect("path").display().to_string()
        )
        .expect("write");
    }
    out.push(']');
    let dest =
        std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    std::fs::write(dest, out).expect("write migrations.rs");
}
