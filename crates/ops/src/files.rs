//! Writing a file the operator asked for (an export, a CSV, a report) so that it is either
//! all there or not there: a temporary file beside it, fsynced, renamed over, the directory
//! fsynced. A crash or a full disk halfway leaves the old file (or none), never half of one.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub fn replace_file<T>(
    file: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T>,
) -> Result<T> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} needs a file name", file.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let cannot_write = || format!("cannot write {}", file.display());
    let result = (|| -> Result<T> {
        let mut out = BufWriter::new(File::create(&tmp).io_context(cannot_write)?);
        let value = write(&mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .io_context(cannot_write)?;
        file.sync_all().io_context(cannot_write)?;
        Ok(value)
    })();
    match result {
        Ok(value) => {
            fs::rename(&tmp, file)
                .io_context(|| format!("cannot rename into {}", file.display()))?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .io_context(|| format!("cannot sync {}", dir.display()))?;
            Ok(value)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}
