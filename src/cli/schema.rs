//! `shiftgate schema`: prints the JSON Schema of a policy file, for editors. With the
//! YAML language server: `# yaml-language-server: $schema=rolloutpolicy.schema.json`.

use std::io::Write as _;

use crate::cli::exit;
use crate::cli::output::say;
use crate::policy::schema::document_schema;

#[derive(clap::Args, Debug)]
pub struct SchemaArgs {}

pub fn run(_args: SchemaArgs) -> i32 {
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer_pretty(&mut out, &document_schema())
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            say!("shiftgate: cannot write the schema: {e}");
            exit::COULD_NOT_RUN
        }
    }
}
