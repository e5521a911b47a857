//! Cutting an input into the pieces a socket might deliver it in.

/// Splits `data` into pieces of 1 to 64 bytes, sizes drawn from a generator seeded with
/// `seed`: the same input always splits the same way, so a crash reproduces.
pub fn pieces(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // xorshift32: cheap, and good enough to vary the cut points.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 64) as usize + 1;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}
