//! mbox and Maildir, the file formats of `tegami import` and `export`: pure readers and
//! writers over bytes, `BufRead` and `Write`, with no store and no file system of their own,
//! so that the fuzz targets (crates/fuzz-targets) call exactly what import runs.

pub mod maildir;
pub mod mbox;
