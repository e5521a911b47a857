//! `Newsletters` history for SQLite: bitmaps, daily totals, raw events, pruning.
