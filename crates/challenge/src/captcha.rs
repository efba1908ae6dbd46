//! A self-hosted slider captcha for the highest risk rank (a first cut).
//!
//! Stateless like the proof of work: the puzzle token carries the gap
//! position *encrypted* (XOR with an HMAC keystream, so the client cannot
//! read it) under an HMAC tag, bound to the client's IP prefix and device
//! id. Both images are re-derived from the token, so the gateway stores
//! nothing until an answer is accepted, and then only the id through
//! [`SeenStore`]. Images are 8-bit indexed PNGs written here (stored
//! deflate blocks, no image dependency).
//!
//! The answer is the final x of the piece plus the drag trace; the trace
//! check rejects teleports, constant-speed robots and impossible speeds.
//! Rate-limiting answers is the caller's (the limits crate), as is the
//! accessible alternative (see README).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::keys::{ClientBinding, Keyring, NetworkBinding, Reader, split_tag, valid_device_id};
use crate::pow::SeenStore;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"portcullis/v1/captcha\0";
const KEYSTREAM: &[u8] = b"portcullis/v1/captcha-gap\0";

/// Errors checking a captcha answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CaptchaError {
    #[error("captcha token is malformed")]
    Malformed,
    #[error("captcha token signature is invalid")]
    BadSignature,
    #[error("captcha expired")]
    Expired,
    #[error("captcha was issued to another device")]
    WrongDevice,
    #[error("captcha was issued to another network")]
    WrongNetwork,
    #[error("the piece is not in the gap")]
    WrongAnswer,
    #[error("the drag does not look human")]
    RobotTrace,
    #[error("captcha was already answered")]
    Replayed,
    #[error("device id is invalid")]
    InvalidDeviceId,
}

impl CaptchaError {
    pub fn code(&self) -> &'static str {
        match self {
            CaptchaError::Malformed => "malformed",
            CaptchaError::BadSignature => "bad_signature",
            CaptchaError::Expired => "expired",
            CaptchaError::WrongDevice => "wrong_device",
            CaptchaError::WrongNetwork => "wrong_network",
            CaptchaError::WrongAnswer => "wrong_answer",
            CaptchaError::RobotTrace => "robot_trace",
            CaptchaError::Replayed => "replayed",
            CaptchaError::InvalidDeviceId => "invalid_device",
        }
    }

    /// HTTP status of the answer (PROTOCOL.md, as for the proof of work).
    pub fn http_status(&self) -> u16 {
        match self {
            CaptchaError::Replayed => 409,
            CaptchaError::WrongDevice
            | CaptchaError::WrongNetwork
            | CaptchaError::InvalidDeviceId => 403,
            _ => 400,
        }
    }
}

/// A puzzle as sent to the client. The images are fetched with the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptchaPuzzle {
    pub token: String,
    pub width: u16,
    pub height: u16,
    /// The square piece's side; it slides horizontally at `piece_y`.
    pub piece: u16,
    pub piece_y: u16,
    pub expires: u64,
}

/// One sample of the drag: time since the drag started (ms), pointer x, y.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracePoint(pub u32, pub i32, pub i32);

/// The client's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliderAnswer {
    /// Final left edge of the piece, in image pixels.
    pub x: f32,
    pub trace: Vec<TracePoint>,
}

/// An accepted answer: record `id` for `ttl_ms` (done by `verify_and_consume`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolvedCaptcha {
    pub id: [u8; 16],
    pub ttl_ms: u64,
}

impl SolvedCaptcha {
    /// `pc:k:<base64url id>`: the key to record in the replay store.
    pub fn replay_key(&self) -> String {
        format!("pc:k:{}", URL_SAFE_NO_PAD.encode(self.id))
    }
}

/// Issues, renders and checks slider puzzles.
#[derive(Debug, Clone)]
pub struct SliderCaptcha {
    keys: Keyring,
    pub ttl_ms: u64,
    pub width: u16,
    pub height: u16,
    pub piece: u16,
    /// Accepted distance between answer and gap, in pixels.
    pub tolerance_px: f32,
    pub network: NetworkBinding,
}

struct Sealed {
    id: [u8; 16],
    expires: u64,
    gap_x: u16,
    gap_y: u16,
    seed: u64,
}

impl SliderCaptcha {
    pub fn new(keys: Keyring) -> Self {
        Self {
            keys,
            ttl_ms: 120_000,
            width: 240,
            height: 120,
            piece: 40,
            tolerance_px: 4.0,
            network: NetworkBinding::default(),
        }
    }

    /// A new puzzle for `client`.
    pub fn issue(
        &self,
        client: &ClientBinding<'_>,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> Result<CaptchaPuzzle, CaptchaError> {
        if !valid_device_id(client.device_id) {
            return Err(CaptchaError::InvalidDeviceId);
        }
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let (w, h, p) = (self.width, self.height, self.piece);
        // The gap is right of the piece's start (x = 0) by at least one piece.
        let span_x = w.saturating_sub(2 * p + 8).max(1);
        let span_y = h.saturating_sub(p + 8).max(1);
        let gap_x = p + 4 + (rng.next_u32() % u32::from(span_x)) as u16;
        let gap_y = 4 + (rng.next_u32() % u32::from(span_y)) as u16;
        let seed = rng.next_u64();
        let expires = now_ms.saturating_add(self.ttl_ms);
        let key = self.keys.current();
        let ks = key.tag(KEYSTREAM, &id);
        let gx = gap_x.to_be_bytes();
        let mut body = Vec::with_capacity(96);
        body.extend_from_slice(&[VERSION, key.id()]);
        body.extend_from_slice(&id);
        body.extend_from_slice(&expires.to_be_bytes());
        body.extend_from_slice(&[gx[0] ^ ks[0], gx[1] ^ ks[1]]);
        body.extend_from_slice(&gap_y.to_be_bytes());
        body.extend_from_slice(&seed.to_be_bytes());
        body.extend_from_slice(&self.network.prefix(client.ip).to_wire());
        body.push(client.device_id.len() as u8);
        body.extend_from_slice(client.device_id.as_bytes());
        let tag = key.tag(DOMAIN, &body);
        body.extend_from_slice(&tag);
        Ok(CaptchaPuzzle {
            token: URL_SAFE_NO_PAD.encode(&body),
            width: w,
            height: h,
            piece: p,
            piece_y: gap_y,
            expires,
        })
    }

    /// Opens a token: MAC, then fields. Binding and expiry are checked by
    /// the callers that need them.
    fn open(
        &self,
        token: &str,
        client: Option<&ClientBinding<'_>>,
    ) -> Result<Sealed, CaptchaError> {
        if token.len() > 256 {
            return Err(CaptchaError::Malformed);
        }
        let mut buf = [0u8; 192];
        let n = URL_SAFE_NO_PAD
            .decode_slice(token, &mut buf)
            .map_err(|_| CaptchaError::Malformed)?;
        let (body, tag) = split_tag(&buf[..n]).ok_or(CaptchaError::Malformed)?;
        let mut r = Reader::new(body);
        let (Some(VERSION), Some(kid)) = (r.u8(), r.u8()) else {
            return Err(CaptchaError::Malformed);
        };
        let key = self.keys.get(kid).ok_or(CaptchaError::BadSignature)?;
        if !key.check(DOMAIN, body, tag) {
            return Err(CaptchaError::BadSignature);
        }
        let parsed = (|| {
            let id: [u8; 16] = r.array()?;
            let expires = r.u64()?;
            let gx: [u8; 2] = r.array()?;
            let gap_y = u16::from_be_bytes(r.array()?);
            let seed = r.u64()?;
            let prefix = r.prefix()?;
            let device = r.device_id()?;
            r.is_empty()
                .then_some((id, expires, gx, gap_y, seed, prefix, device))
        })();
        let (id, expires, gx, gap_y, seed, prefix, device) =
            parsed.ok_or(CaptchaError::Malformed)?;
        if let Some(c) = client {
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                device.as_bytes(),
                c.device_id.as_bytes(),
            )) {
                return Err(CaptchaError::WrongDevice);
            }
            if !prefix.contains(c.ip) {
                return Err(CaptchaError::WrongNetwork);
            }
        }
        let ks = key.tag(KEYSTREAM, &id);
        Ok(Sealed {
            id,
            expires,
            gap_x: u16::from_be_bytes([gx[0] ^ ks[0], gx[1] ^ ks[1]]),
            gap_y,
            seed,
        })
    }

    /// Checks an answer (not consumed: see [`Self::verify_and_consume`]).
    pub fn verify(
        &self,
        token: &str,
        answer: &SliderAnswer,
        now_ms: u64,
        client: &ClientBinding<'_>,
    ) -> Result<SolvedCaptcha, CaptchaError> {
        let s = self.open(token, Some(client))?;
        if now_ms >= s.expires {
            return Err(CaptchaError::Expired);
        }
        if !answer.x.is_finite() || (answer.x - f32::from(s.gap_x)).abs() > self.tolerance_px {
            return Err(CaptchaError::WrongAnswer);
        }
        if !human_trace(&answer.trace) {
            return Err(CaptchaError::RobotTrace);
        }
        Ok(SolvedCaptcha {
            id: s.id,
            ttl_ms: s.expires - now_ms,
        })
    }

    /// [`verify`](Self::verify), then records the id: one answer per puzzle
    /// (a wrong answer is not consumed; rate-limit answers per device).
    pub fn verify_and_consume(
        &self,
        token: &str,
        answer: &SliderAnswer,
        now_ms: u64,
        client: &ClientBinding<'_>,
        seen: &dyn SeenStore,
    ) -> Result<SolvedCaptcha, CaptchaError> {
        let solved = self.verify(token, answer, now_ms, client)?;
        if !seen.first_use(solved.replay_key().as_bytes(), solved.ttl_ms) {
            return Err(CaptchaError::Replayed);
        }
        Ok(solved)
    }

    /// The background PNG (with the gap) and the piece PNG of a puzzle.
    /// Deterministic from the token, so any node can serve them.
    pub fn render(&self, token: &str, now_ms: u64) -> Result<(Vec<u8>, Vec<u8>), CaptchaError> {
        let s = self.open(token, None)?;
        if now_ms >= s.expires {
            return Err(CaptchaError::Expired);
        }
        let (w, h, p) = (
            usize::from(self.width),
            usize::from(self.height),
            usize::from(self.piece),
        );
        let mut rng = SplitMix(s.seed);
        let mut img = vec![0u8; w * h];
        // Smooth gradient with random blobs: indexes 0..128 are the palette's
        // light half, +128 the same colours darkened (the gap).
        let (fx, fy) = (rng.below(5) + 2, rng.below(5) + 2);
        for y in 0..h {
            for x in 0..w {
                img[y * w + x] = ((x * fx + y * fy) / 4 % 96) as u8;
            }
        }
        for _ in 0..14 {
            let (cx, cy, r) = (rng.below(w), rng.below(h), rng.below(22) + 6);
            let c = (rng.below(128)) as u8;
            for y in cy.saturating_sub(r)..(cy + r).min(h) {
                for x in cx.saturating_sub(r)..(cx + r).min(w) {
                    let (dx, dy) = (x.abs_diff(cx), y.abs_diff(cy));
                    if dx * dx + dy * dy <= r * r {
                        img[y * w + x] = c;
                    }
                }
            }
        }
        for px in img.iter_mut() {
            if rng.below(7) == 0 {
                *px = (*px + rng.below(8) as u8) % 128;
            }
        }
        let (gx, gy) = (usize::from(s.gap_x), usize::from(s.gap_y));
        let mut piece = vec![0u8; p * p];
        for y in 0..p {
            for x in 0..p {
                piece[y * p + x] = img[(gy + y).min(h - 1) * w + (gx + x).min(w - 1)];
            }
        }
        // The gap: the same colours, darkened.
        for y in gy..(gy + p).min(h) {
            for x in gx..(gx + p).min(w) {
                img[y * w + x] |= 0x80;
            }
        }
        let palette = palette(&mut rng);
        Ok((
            png_indexed(w, h, &img, &palette),
            png_indexed(p, p, &piece, &palette),
        ))
    }
}

/// Trace heuristics: enough samples, time strictly increasing, a plausible
/// duration, x moving right overall, and speed that varies (a human
/// accelerates and brakes; a script moves at constant speed or teleports):
/// the speed's coefficient of variation must exceed 0.3 (an eased human-like
/// drag has ~0.45; a linear drag with browser timing jitter far less).
pub fn human_trace(trace: &[TracePoint]) -> bool {
    if trace.len() < 6 || trace.len() > 2_000 {
        return false;
    }
    let (first, last) = (trace[0], trace[trace.len() - 1]);
    let duration = last.0.saturating_sub(first.0);
    if !(250..=60_000).contains(&duration) || last.1 <= first.1 {
        return false;
    }
    let mut speeds = Vec::with_capacity(trace.len());
    for w in trace.windows(2) {
        let dt = w[1].0.checked_sub(w[0].0);
        match dt {
            Some(dt) if dt > 0 => speeds.push((w[1].1 - w[0].1) as f32 / dt as f32),
            _ => return false,
        }
    }
    let mean = speeds.iter().sum::<f32>() / speeds.len() as f32;
    let var = speeds.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / speeds.len() as f32;
    let max = speeds.iter().fold(0f32, |m, s| m.max(s.abs()));
    // px/ms: 10 px/ms is 10,000 px/s.
    max < 10.0 && var.sqrt() > 0.3 * mean.abs().max(0.01)
}

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn palette(rng: &mut SplitMix) -> [[u8; 3]; 256] {
    let mut pal = [[0u8; 3]; 256];
    let base = [rng.below(80), rng.below(80), rng.below(80)];
    for (i, c) in pal.iter_mut().take(128).enumerate() {
        let t = i * 160 / 128;
        *c = [
            (base[0] + t * (1 + i % 3) / 2).min(255) as u8,
            (base[1] + t).min(255) as u8,
            (base[2] + (160 - t) / 2 + t / 3).min(255) as u8,
        ];
    }
    for i in 0..128 {
        let [r, g, b] = pal[i];
        pal[i + 128] = [r / 3, g / 3, b / 3];
    }
    pal
}

fn crc32(chunks: &[&[u8]]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for data in chunks {
        for &b in *data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// An 8-bit indexed PNG with stored (uncompressed) deflate blocks.
fn png_indexed(w: usize, h: usize, px: &[u8], pal: &[[u8; 3]; 256]) -> Vec<u8> {
    let mut raw = Vec::with_capacity((w + 1) * h);
    for row in px.chunks(w) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let flat: Vec<u8> = pal.iter().flatten().copied().collect();
    chunk(&mut out, b"PLTE", &flat);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::tests::Mem;
    use std::cell::RefCell;
    use std::collections::HashSet;

    fn setup() -> (SliderCaptcha, ClientBinding<'static>) {
        (
            SliderCaptcha::new(Keyring::new(1, &[9u8; 32]).unwrap()),
            ClientBinding {
                ip: "198.51.100.1".parse().unwrap(),
                device_id: "dev",
            },
        )
    }

    /// A drag that accelerates then brakes, ending at `x`.
    fn human(x: f32) -> Vec<TracePoint> {
        let n = 30;
        (0..=n)
            .map(|i| {
                let t = i as f32 / n as f32;
                let ease = t * t * (3.0 - 2.0 * t);
                TracePoint((i * 25) as u32, (ease * x) as i32, i % 3)
            })
            .collect()
    }

    #[test]
    fn solve_with_the_sealed_gap() {
        let (c, client) = setup();
        let pz = c.issue(&client, 0, &mut rand::rng()).unwrap();
        let gap = f32::from(c.open(&pz.token, None).unwrap().gap_x);
        assert!(gap >= f32::from(c.piece) && gap <= f32::from(c.width - c.piece));
        let seen = Mem(RefCell::new(HashSet::new()));
        let ans = SliderAnswer {
            x: gap + 2.0,
            trace: human(gap + 2.0),
        };
        assert!(
            c.verify_and_consume(&pz.token, &ans, 10, &client, &seen)
                .is_ok()
        );
        assert_eq!(
            c.verify_and_consume(&pz.token, &ans, 10, &client, &seen),
            Err(CaptchaError::Replayed)
        );
        let wrong = SliderAnswer {
            x: gap + 9.0,
            trace: human(gap + 9.0),
        };
        assert_eq!(
            c.verify(&pz.token, &wrong, 10, &client),
            Err(CaptchaError::WrongAnswer)
        );
        assert_eq!(
            c.verify(&pz.token, &ans, c.ttl_ms, &client),
            Err(CaptchaError::Expired)
        );
        let other = ClientBinding {
            ip: client.ip,
            device_id: "other",
        };
        assert_eq!(
            c.verify(&pz.token, &ans, 10, &other),
            Err(CaptchaError::WrongDevice)
        );
    }

    #[test]
    fn gap_is_not_readable_from_the_token() {
        let (c, client) = setup();
        // Same id and layout from a fixed RNG, two keys: the sealed bytes differ.
        struct Fixed;
        impl RngCore for Fixed {
            fn next_u32(&mut self) -> u32 {
                7
            }
            fn next_u64(&mut self) -> u64 {
                7
            }
            fn fill_bytes(&mut self, d: &mut [u8]) {
                d.fill(1)
            }
        }
        let c2 = SliderCaptcha::new(Keyring::new(1, &[10u8; 32]).unwrap());
        let a = URL_SAFE_NO_PAD
            .decode(c.issue(&client, 0, &mut Fixed).unwrap().token)
            .unwrap();
        let b = URL_SAFE_NO_PAD
            .decode(c2.issue(&client, 0, &mut Fixed).unwrap().token)
            .unwrap();
        assert_eq!(a[..26], b[..26]);
        assert_ne!(a[26..28], b[26..28]);
    }

    #[test]
    fn robot_traces() {
        assert!(human_trace(&human(120.0)));
        let linear: Vec<TracePoint> = (0..20)
            .map(|i| TracePoint(i * 20, i as i32 * 6, 0))
            .collect();
        assert!(!human_trace(&linear));
        let teleport = vec![TracePoint(0, 0, 0), TracePoint(1, 120, 0)];
        assert!(!human_trace(&teleport));
        let mut backwards = human(120.0);
        backwards[3].0 = 0;
        assert!(!human_trace(&backwards));
    }

    #[test]
    fn renders_pngs() {
        let (c, client) = setup();
        let pz = c.issue(&client, 0, &mut rand::rng()).unwrap();
        let (bg, piece) = c.render(&pz.token, 1).unwrap();
        assert_eq!(&bg[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&piece[1..4], b"PNG");
        assert!(bg.len() < 32_000, "{}", bg.len());
        assert_eq!(c.render(&pz.token, 1).unwrap().0, bg, "deterministic");
        if let Ok(dir) = std::env::var("CAPTCHA_PNG_DIR") {
            std::fs::write(format!("{dir}/bg.png"), &bg).unwrap();
            std::fs::write(format!("{dir}/piece.png"), &piece).unwrap();
        }
    }
}
