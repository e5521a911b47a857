//! Delivery of the outbound queue (issue 9). SKELETON: see /work/notes/contract-9.md.
