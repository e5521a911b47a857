//! Newsletters and step mail (issue 10). SKELETON: see /work/notes/contract-10.md.
