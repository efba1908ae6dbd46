//! The memory backend saved to a file and loaded back, so that a restart
//! or a deployment keeps bans, nonces, revocations, rate-limit cells and the
//! risk history (first-seen times, accounts per device) instead of starting
//! cold. Times are written as what is left of them, so a file read after a
//! pause of any length is still right: what expired meanwhile is skipped.
//!
//! Format (version 1): the magic `PCSTATE1`, then one record per live key,
//! least recently used first: key length (u32 LE), key, time left in
//! nanoseconds (u64 LE), a kind byte and the value: a counter (i64 LE), a
//! rate-limit cell's time left until its theoretical arrival time (u64 LE),
//! a set (u32 LE count, then each member as length and bytes), or bytes
//! (u32 LE length, bytes).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::{Entry, FIXED_SHARDS, LRU_SHARDS, MemoryStore, Table, Value};
use crate::Tier;

const MAGIC: &[u8; 8] = b"PCSTATE1";
/// Longest key read back; longer ones mean a damaged file.
const MAX_KEY: usize = 4096;

const COUNTER: u8 = 0;
const TAT: u8 = 1;
const SET: u8 = 2;
const BYTES: u8 = 3;

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    pub keys: usize,
    /// Keys that had expired, or that a full security tier could not take.
    pub skipped: usize,
}

impl MemoryStore {
    /// Writes every live key to `path` (through a temporary file renamed
    /// over it, so a crash mid-write leaves the previous snapshot); returns
    /// how many keys were written. Shards are locked one at a time and only
    /// while their entries are copied into memory: the file is written with
    /// no lock held.
    pub fn save_snapshot(&self, path: &Path) -> io::Result<usize> {
        let partial = path.with_extension("partial");
        let mut out = BufWriter::new(File::create(&partial)?);
        out.write_all(MAGIC)?;
        let mut written = 0;
        let mut copied = Vec::new();
        for table in self.tables.iter() {
            let shards = match table {
                Table::Lru(lru) => lru.shards.len(),
                Table::Fixed(fixed) => fixed.shards.len(),
            };
            for index in 0..shards {
                copied.clear();
                written += match table {
                    Table::Lru(lru) => {
                        let shard = lru.shards[index].lock();
                        // Least recently used first: loading in file order
                        // rebuilds the same recency.
                        let entries = shard.iter().rev().map(|(k, e)| (k.as_ref(), e));
                        self.write_entries(&mut copied, entries)?
                    }
                    Table::Fixed(fixed) => {
                        let shard = fixed.shards[index].lock();
                        let entries = shard.iter().map(|(k, e)| (k.as_ref(), e));
                        self.write_entries(&mut copied, entries)?
                    }
                };
                out.write_all(&copied)?;
            }
        }
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        std::fs::rename(&partial, path)?;
        Ok(written)
    }

    fn write_entries<'a>(
        &self,
        out: &mut impl Write,
        entries: impl Iterator<Item = (&'a str, &'a Entry)>,
    ) -> io::Result<usize> {
        let now = self.now_ns();
        let mut written = 0;
        for (key, entry) in entries.filter(|(_, e)| e.expires_ns > now) {
            write_bytes(out, key.as_bytes())?;
            out.write_all(&(entry.expires_ns - now).to_le_bytes())?;
            match &entry.value {
                Value::Counter(n) => {
                    out.write_all(&[COUNTER])?;
                    out.write_all(&n.to_le_bytes())?;
                }
                Value::Tat(tat) => {
                    out.write_all(&[TAT])?;
                    out.write_all(&tat.saturating_sub(now).to_le_bytes())?;
                }
                Value::Set(members) => {
                    out.write_all(&[SET])?;
                    out.write_all(&len_u32(members.len())?.to_le_bytes())?;
                    for member in members {
                        write_bytes(out, member.as_bytes())?;
                    }
                }
                Value::Bytes(bytes) => {
                    out.write_all(&[BYTES])?;
                    write_bytes(out, bytes)?;
                }
            }
            written += 1;
        }
        Ok(written)
    }

    /// Adds the keys saved in `path` to this (fresh) store. A missing file
    /// is an empty snapshot; a damaged one is an error, with the keys read
    /// before the damage kept.
    pub fn load_snapshot(&self, path: &Path) -> io::Result<Loaded> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(e),
        };
        let mut input = BufReader::new(file);
        let mut magic = [0; 8];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(damaged("not a state snapshot"));
        }
        let mut loaded = Loaded::default();
        while let Some((key, left_ns, value)) = self.read_entry(&mut input)? {
            if left_ns == 0 || !self.restore(&key, left_ns, value) {
                loaded.skipped += 1;
            } else {
                loaded.keys += 1;
            }
        }
        Ok(loaded)
    }

    fn read_entry(&self, input: &mut impl Read) -> io::Result<Option<(String, u64, Value)>> {
        let mut len = [0; 4];
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let key = read_string(input, u32::from_le_bytes(len) as usize, MAX_KEY)?;
        let left_ns = read_u64(input)?;
        let mut kind = [0; 1];
        input.read_exact(&mut kind)?;
        let max_value = self.options.max_value_bytes;
        let value = match kind[0] {
            COUNTER => Value::Counter(read_u64(input)? as i64),
            TAT => Value::Tat(self.now_ns().saturating_add(read_u64(input)?)),
            SET => {
                let count = read_u32(input)? as usize;
                if count > self.options.set_member_cap {
                    return Err(damaged("a set larger than the member cap"));
                }
                let mut members = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = read_u32(input)? as usize;
                    members.push(read_string(input, len, max_value)?.into_boxed_str());
                }
                Value::Set(members)
            }
            BYTES => {
                let len = read_u32(input)? as usize;
                Value::Bytes(read_vec(input, len, max_value)?.into_boxed_slice())
            }
            _ => return Err(damaged("an unknown value kind")),
        };
        Ok(Some((key, left_ns, value)))
    }

    /// Puts one saved key back; false when its tier is full.
    fn restore(&self, key: &str, left_ns: u64, value: Value) -> bool {
        let now = self.now_ns();
        let entry = Entry {
            value,
            expires_ns: now.saturating_add(left_ns),
        };
        match self.table(Tier::of(key)) {
            Table::Lru(lru) => {
                let mut shard = lru.shards[self.shard_index(key, LRU_SHARDS)].lock();
                shard.push(key.into(), entry);
                if shard.len() > lru.per_shard {
                    shard.pop_lru();
                }
                true
            }
            Table::Fixed(fixed) => {
                let mut shard = fixed.shards[self.shard_index(key, FIXED_SHARDS)].lock();
                if shard.contains_key(key) {
                    shard.insert(key.into(), entry);
                    return true;
                }
                if !fixed.try_reserve() {
                    return false;
                }
                shard.insert(key.into(), entry);
                true
            }
        }
    }
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("damaged state snapshot: {what}"),
    )
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "value too long"))
}

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(&len_u32(bytes.len())?.to_le_bytes())?;
    out.write_all(bytes)
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    input.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Reads `len` bytes, refusing lengths beyond `max` before allocating.
fn read_vec(input: &mut impl Read, len: usize, max: usize) -> io::Result<Vec<u8>> {
    if len > max {
        return Err(damaged("a length beyond its bound"));
    }
    let mut bytes = vec![0; len];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read_string(input: &mut impl Read, len: usize, max: usize) -> io::Result<String> {
    String::from_utf8(read_vec(input, len, max)?).map_err(|_| damaged("a key that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Gcra, MemoryStore, MemoryStoreOptions, StateStore};

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("portcullis-snapshot-{}-{name}", std::process::id()))
    }

    #[tokio::test]
    async fn security_state_and_risk_history_outlive_a_restart() {
        let path = temp_path("restart");
        let before = MemoryStore::new(MemoryStoreOptions::default());
        let ttl = Duration::from_secs(600);
        before.put("ban:203.0.113.7", b"flood", ttl).await.unwrap();
        assert!(before.put_if_absent("pc:n:abc", b"", ttl).await.unwrap());
        before.incr("rk:n:device-1", 5, ttl).await.unwrap();
        before
            .set_add("rk:acc:device-1", "alice", ttl)
            .await
            .unwrap();
        before.set_add("rk:acc:device-1", "bob", ttl).await.unwrap();
        let limit = Gcra::per_second(1.0, 2);
        for _ in 0..2 {
            assert!(before.rate_limit("rl:x", limit, 1).await.unwrap().allowed);
        }
        before
            .put("old", b"expires", Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(before.save_snapshot(&path).unwrap(), 5);

        let after = MemoryStore::new(MemoryStoreOptions::default());
        let loaded = after.load_snapshot(&path).unwrap();
        assert_eq!(loaded.keys, 5);
        let ban = after.get("ban:203.0.113.7").await.unwrap();
        assert_eq!(ban.as_deref(), Some(&b"flood"[..]));
        assert!(
            !after.put_if_absent("pc:n:abc", b"", ttl).await.unwrap(),
            "a nonce used before the restart is still used"
        );
        assert_eq!(after.incr("rk:n:device-1", 0, ttl).await.unwrap(), 5);
        assert_eq!(
            after.set_add("rk:acc:device-1", "bob", ttl).await.unwrap(),
            2
        );
        assert!(
            !after.rate_limit("rl:x", limit, 1).await.unwrap().allowed,
            "the burst spent before the restart stays spent"
        );
        assert_eq!(after.get("old").await.unwrap(), None);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_missing_file_is_an_empty_start_and_a_damaged_one_an_error() {
        let store = MemoryStore::new(MemoryStoreOptions::default());
        let missing = temp_path("missing");
        assert_eq!(store.load_snapshot(&missing).unwrap().keys, 0);
        let damaged = temp_path("damaged");
        std::fs::write(&damaged, b"PCSTATE1\xff\xff\xff\xffkey").unwrap();
        assert!(store.load_snapshot(&damaged).is_err());
        std::fs::write(&damaged, b"something else").unwrap();
        assert!(store.load_snapshot(&damaged).is_err());
        let _ = std::fs::remove_file(&damaged);
    }

    #[tokio::test]
    async fn a_full_security_tier_takes_what_fits() {
        let path = temp_path("full");
        let roomy = MemoryStore::new(MemoryStoreOptions::default());
        let ttl = Duration::from_secs(60);
        for i in 0..10 {
            roomy
                .put_if_absent(&format!("pc:n:{i}"), b"", ttl)
                .await
                .unwrap();
        }
        roomy.save_snapshot(&path).unwrap();
        let small = MemoryStore::new(MemoryStoreOptions {
            nonces_capacity: 4,
            ..MemoryStoreOptions::default()
        });
        let loaded = small.load_snapshot(&path).unwrap();
        assert_eq!((loaded.keys, loaded.skipped), (4, 6));
        let _ = std::fs::remove_file(&path);
    }
}
