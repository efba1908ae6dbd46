//! Event ids that sort by time.
//!
//! An event's id is `ts_ms << 16 | seq`: ordering by id is ordering by
//! time, a time range is an id range (so the table's own key serves time
//! filters and retention without a timestamp index), and the id is the
//! search cursor. `seq` is a wrapping counter of the writer; a rare
//! collision (a clock stepping back) is resolved by the store taking the
//! next `seq`.

const SEQ_BITS: u32 = 16;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// The largest timestamp that fits (about the year 6400).
const MAX_TS_MS: i64 = i64::MAX >> SEQ_BITS;

/// The id of an event at `ts_ms` with sequence number `seq` (wrapped).
pub fn event_id(ts_ms: i64, seq: u64) -> i64 {
    let seq = i64::try_from(seq & SEQ_MASK).unwrap_or(0);
    (ts_ms.clamp(0, MAX_TS_MS) << SEQ_BITS) | seq
}

/// The smallest id of any event at or after `ts_ms`.
pub fn id_floor(ts_ms: i64) -> i64 {
    event_id(ts_ms, 0)
}

/// The timestamp encoded in an id.
pub fn id_ts_ms(id: i64) -> i64 {
    id >> SEQ_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_then_seq() {
        let a = event_id(1_795_425_152_006, 65_535);
        let b = event_id(1_795_425_152_007, 0);
        assert!(a < b);
        assert_eq!(id_ts_ms(a), 1_795_425_152_006);
        assert_eq!(event_id(5, 65_536), event_id(5, 0));
        assert!(id_floor(1_795_425_152_007) <= b);
        assert!(id_floor(1_795_425_152_007) > a);
    }

    #[test]
    fn clamps_out_of_range_timestamps() {
        assert_eq!(event_id(-3, 1), 1);
        assert!(event_id(i64::MAX, 0) > 0);
    }
}
