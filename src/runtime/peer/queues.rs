//! Bytes queued for the links' writers: a limit per link and one for all
//! links together, so that a peer that stops reading (or asks for stem data
//! faster than it reads it) is cut off instead of growing our memory. Pure:
//! the core asks [`cuts`] before it queues a message and closes the links it
//! names; each link's count is shared with its writer, which takes off what
//! it wrote.
//!
//! Sizes are estimated per message (`net::approx_wire_bytes`), not encoded
//! twice. This counts what waits in a link's channel and its writer's
//! outbox; the channel's own limit (1024 messages) still holds beside it.

use super::links::ConnId;

/// Bytes one link may have queued: two full outboxes of stem data (2 × 64
/// chunks of the largest, 256 KiB). An honest fetcher asks a host for at
/// most 8 chunks at a time, so it never has more than 2 MiB waiting here;
/// a link with 32 MiB waiting has not read for a long while.
pub const MAX_QUEUED_BYTES_PER_LINK: usize = 32 << 20;

/// Bytes all links together may have queued: four non-reading links' worth.
/// Past it the link with the most queued is cut, the likeliest not to be
/// reading, rather than whichever link the next message is for.
pub const MAX_QUEUED_BYTES: usize = 128 << 20;

/// The links to close before `bytes` more are queued for link `to`, given
/// what each link (by connection) has queued now: `to` if it would pass
/// [`MAX_QUEUED_BYTES_PER_LINK`]; else, while all together would pass
/// [`MAX_QUEUED_BYTES`], the link with the most queued (ties: the lowest
/// id), which may be `to` itself. The message is queued unless `to` is
/// among them. Work is bounded by the number of links.
pub fn cuts(queued: &[(ConnId, usize)], to: ConnId, bytes: usize) -> Vec<ConnId> {
    let on_link = (queued.iter())
        .find(|&&(c, _)| c == to)
        .map_or(0, |&(_, q)| q);
    if on_link.saturating_add(bytes) > MAX_QUEUED_BYTES_PER_LINK {
        return vec![to];
    }
    let mut total = (queued.iter()).fold(bytes, |t, &(_, q)| t.saturating_add(q));
    if total <= MAX_QUEUED_BYTES {
        return Vec::new(); // the usual case: no copy, no sort
    }
    let mut left: Vec<(ConnId, usize)> = queued.to_vec();
    // Biggest first, ties to the lowest id.
    left.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out = Vec::new();
    for (conn, q) in left {
        if total <= MAX_QUEUED_BYTES || q == 0 {
            break;
        }
        out.push(conn);
        total -= q;
        if conn == to {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[track_caller]
    fn check(queued: &[(ConnId, usize)], to: ConnId, bytes: usize, expected: &[ConnId]) {
        assert_eq!(cuts(queued, to, bytes), expected);
    }

    /// Within both limits nothing is cut; a link that would pass its own
    /// limit is cut, whatever the others hold.
    #[test]
    fn a_link_past_its_own_limit_is_cut() {
        check(&[(1, 0), (2, 0)], 1, 100, &[]);
        check(&[(1, 31 * MIB), (2, 0)], 1, MIB, &[]);
        check(&[(1, 31 * MIB), (2, 0)], 1, MIB + 1, &[1]);
        check(&[(1, 0)], 1, MAX_QUEUED_BYTES_PER_LINK + 1, &[1]);
        check(&[(1, 0)], 1, usize::MAX, &[1]);
        check(&[], 7, 100, &[]);
    }

    /// Past the total, the links holding the most are cut until the rest
    /// fits, not the link the message is for; it is cut only if it holds
    /// the most.
    #[test]
    fn past_the_total_the_biggest_queues_are_cut() {
        let full = MAX_QUEUED_BYTES_PER_LINK;
        let four = [(1, full), (2, full), (3, full), (4, 30 * MIB), (5, 0)];
        check(&four, 5, 2 * MIB, &[]);
        check(&four, 5, 2 * MIB + 1, &[1]);
        check(&four, 4, 2 * MIB + 1, &[4]);
        let six = [
            (1, full),
            (2, full),
            (3, 20 * MIB),
            (4, full),
            (5, full),
            (6, full),
        ];
        check(&six, 3, MIB, &[1, 2]);
        check(&six, 1, 0, &[1]);
    }
}
